"""Services offered from VMs (vmForwards), proven with real packets in the namespace lab.

A VM stand-in with a public-range address (a virtual router's public NIC, where
CloudStack's port forwarding would take over) is plugged into host1's cloudbr0.
The router runs overlay-network.sh with VM_FORWARDS, as the router's forwards
refresh does when the SSM parameter changes: the internet reaches a declared
forward through the Elastic IP, never an undeclared port, and a changed list is
applied to the running router in place while the UI forward keeps working.
Who may connect (the entry's sources) is the router's security group's business,
proven under mocks (tests/unit/test_components_multicast_router.py).
"""

from __future__ import annotations

import sys

import pytest

from .netlab import DB_ADDRESS, ELASTIC_IP, FAR_HOST, INTERNET_CLIENT, MGMT, ROUTER, SCRIPT, TOOLS, UI_PORT, WHOAMI_PORT, Lab
from .test_isolation_lab import ROUTER_TABLE, bridge_mac, connect, plug, without

pytestmark = pytest.mark.lab

VM_IP = "10.100.128.5"  # public range of the lab's overlay


@pytest.fixture(scope="module")
def vm(lab: Lab):
    servers = []
    before = bridge_mac(lab, "host1")
    try:
        plug(lab, "vm", "host1", VM_IP)
        for port in (22, 5000):
            servers.append(lab.spawn("vm", sys.executable, str(TOOLS), "whoami", f"vm-{port}", "0.0.0.0", str(port)))
        yield lab
    finally:
        for server in servers:
            lab.stop(server)
        lab.del_ns("vm")
        lab.overlay_script(ROUTER)  # back to the router without VM forwards
        assert bridge_mac(lab, "host1") == before


def apply(lab: Lab, forwards: str):
    env = {**lab.overlay_env(ROUTER), "VM_FORWARDS": forwards}
    return lab.run("router", "bash", str(SCRIPT), env=env, check=False)


def test_a_declared_forward_reaches_the_vm_and_an_undeclared_port_does_not(vm: Lab):
    result = apply(vm, f"tcp:2222:{VM_IP}:22")
    assert result.returncode == 0, result.stderr
    assert connect(vm, "inet", ELASTIC_IP, 2222) == (True, f"vm-22 {INTERNET_CLIENT}")
    assert not connect(vm, "inet", ELASTIC_IP, 5000, 1.5)[0], "an undeclared port reached the VM"
    assert not connect(vm, "inet", ELASTIC_IP, 22, 1.5)[0]


def test_changed_forwards_apply_to_the_running_router_in_place(vm: Lab):
    assert apply(vm, f"tcp:2222:{VM_IP}:22").returncode == 0
    assert connect(vm, "far", ELASTIC_IP, 2222) == (True, f"vm-22 {FAR_HOST}")
    result = apply(vm, f"tcp:5000:{VM_IP}:5000")
    assert result.returncode == 0, result.stderr
    assert "creating" not in result.stdout and "replacing" not in result.stdout, result.stdout
    assert connect(vm, "far", ELASTIC_IP, 5000) == (True, f"vm-5000 {FAR_HOST}")
    assert not connect(vm, "far", ELASTIC_IP, 2222, 1.5)[0], "a removed forward still answers"
    assert connect(vm, "far", ELASTIC_IP, UI_PORT) == (True, f"mgmt-ui {FAR_HOST}")


@pytest.mark.parametrize("forward, words", [
    (f"tcp:2222:{MGMT.overlay}:22", "infrastructure address"),
    ("tcp:2222:10.100.64.9:22", "system range"),
    (f"tcp:{UI_PORT}:{VM_IP}:80", "already forwarded"),
])
def test_forwards_never_reach_infrastructure_or_system_vms(vm: Lab, forward: str, words: str):
    result = apply(vm, forward)
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert "nothing was changed" in result.stderr


def test_from_the_vpc_only_the_ui_reaches_an_overlay_address(vm: Lab):
    # The database subnet stands for any VPC client: the router's security group
    # admits 8080 from the VPC, so the router itself must say where it may go.
    assert apply(vm, f"tcp:2222:{VM_IP}:22").returncode == 0
    assert connect(vm, "db", MGMT.overlay, UI_PORT) == (True, f"mgmt-ui {DB_ADDRESS}")
    assert connect(vm, "db", ROUTER.underlay, 2222) == (True, f"vm-22 {DB_ADDRESS}")  # the declared forward
    refused = vm.counter("inbound_refused", "router", ROUTER_TABLE)
    for address, port in ((VM_IP, 22), (vm.instances["host0"].overlay, WHOAMI_PORT), (MGMT.overlay, WHOAMI_PORT)):
        ok, output = connect(vm, "db", address, port, 1.5)
        assert not ok, f"the VPC reached {address}:{port} directly: {output}"
    assert vm.counter("inbound_refused", "router", ROUTER_TABLE) >= refused + 3
    with without(vm, "router", ROUTER_TABLE, ("into_overlay", "inbound_refused")):
        assert connect(vm, "db", VM_IP, 22) == (True, f"vm-22 {DB_ADDRESS}")
