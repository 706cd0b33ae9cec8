"""A KVM host routes nothing, proven with real packets in the namespace lab (netlab.py).

libvirt turns IPv4 forwarding on whenever it starts a NAT network and leaves it on
when the network stops (src/network/bridge_driver.c, networkStartNetworkVirtual,
networkEnableIPForwarding), and Ubuntu's libvirt-daemon-system brings one marked
autostart ("default": bridge virbr0, 192.168.122.0/24 masqueraded to anywhere else).
A forwarding host routes what a VM sends to the MAC of the host's bridge:
  - from a tenant on a guest bridge (brethovl0-1000): a SYN to the management
    server's 8080 from a public source the tenant forged (its accomplice there
    would read the answer), past the router's security group. The overlay script's
    reverse-path filter happens to stop this one: a guest bridge has no IPv4
    address, and for such a device the kernel accepts only sources routed through
    it (net/ipv4/fib_frontend.c, __fib_validate_source: no address -> "last_resort",
    refused when rp_filter is set). With the kernel's default rp_filter (0), on a
    distribution that sets none, it arrives;
  - from a VM on cloudbr0 (a virtual router's public NIC): with the default network
    up, any source of 192.168.122.0/24 passes the loose check (its route is virbr0)
    and libvirt's masquerade gives the packet the host's own VPC address, so EC2's
    source/destination check lets it into the CloudStack subnet, to a service that
    admits the hosts (EFS admits the members' security group).
The host's firewall stops neither (its table filters the input hook only). The
boot's state stops both: the default network stopped and the sysctl file the real
kvm-host.sh writes (run against the boot fakes of tests/userdata) applied. The
tenant's own bridged traffic still flows, with and without br_netfilter.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest

from .netlab import MGMT, TOOLS, TROUBLEMAKER, UI_PORT, WHOAMI_PORT, Lab
from .test_guest_bridge_lab import (GATEWAY, GATEWAY_IP, GUEST_BRIDGE, HOST, KERNEL_DEFAULTS, TENANT, TENANT_IP,
                                    guest_bridge, mac_of, packets_sent, undo_guest, vm_mac)
from .test_isolation_lab import booted, connect, link_local, plug

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "userdata"))
import bootlab  # noqa: E402  (the boot-script harness: runs the real user data against fakes)

pytestmark = pytest.mark.lab

NO_ROUTING_FILE = "/etc/sysctl.d/90-cloudstack-ec2-no-routing.conf"
FORGED_SOURCE = "198.51.100.77"  # a public address the tenant's accomplice holds
VM, VM_IP = "rvm", "10.100.128.77"  # a VM NIC on host0's cloudbr0 (a virtual router's public NIC)
NAT_SOURCE = "192.168.122.77"     # an address of libvirt's default network, claimed by that VM
NFS_PORT = 2049
PROBE_TABLE = "inet csl_probe"
VIRBR, VIRBR_ADDRESS, VIRBR_NET = "virbr0", "192.168.122.1/24", "192.168.122.0/24"
SAVED_KEYS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv6.conf.default.forwarding",
              "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")


def probe(lab: Lab, short: str, name: str, match: str) -> None:
    """A counter of the packets `match` in `short`'s prerouting, before anything of its own sees them."""
    lab.run(short, "nft", "-f", "-", input=f"""
table {PROBE_TABLE} {{
    counter {name} {{ }}
    chain prerouting {{ type filter hook prerouting priority raw; policy accept;
        {match} counter name "{name}"
    }}
}}
""")


@pytest.fixture(scope="module")
def routing(lab: Lab, tmp_path_factory):
    """host0 with the firewall and the no-routing file the real boot script writes, a guest
    bridge with the tenant and its gateway, and a VM on host0's cloudbr0. The tenant sends
    the management server's address to host0's guest bridge MAC from the forged source,
    the VM the troublemaker's (an address of the CloudStack subnet) to host0's cloudbr0 MAC
    from the NAT source; the management server and the troublemaker count what arrives.
    All undone afterwards."""
    machine = booted(tmp_path_factory.mktemp("kvm"), bootlab.KVM_HOST)
    lab.no_routing_file = machine.file(NO_ROUTING_FILE).as_posix()
    saved = {key: lab.run(HOST, "sysctl", "-n", key).stdout.strip() for key in SAVED_KEYS}
    servers = []
    try:
        lab.overlay_script(lab.instances[HOST])
        lab.run(HOST, "nft", "-f", machine.file("/etc/cloudstack-ec2/host-firewall.nft").as_posix())
        guest_bridge(lab)
        aim(lab, TENANT, FORGED_SOURCE, MGMT.overlay, GUEST_BRIDGE)
        plug(lab, VM, HOST, VM_IP)
        vm_mac(lab, VM, "02:00:00:00:10:77")
        aim(lab, VM, NAT_SOURCE, TROUBLEMAKER.underlay, "cloudbr0")
        probe(lab, "mgmt", "spoofed", f"ip saddr {FORGED_SOURCE} ip daddr {MGMT.overlay} tcp dport {UI_PORT}")
        probe(lab, "tm", "from_host0", f"ip saddr {lab.instances[HOST].underlay} tcp dport {NFS_PORT}")
        servers.append(lab.spawn(GATEWAY, sys.executable, str(TOOLS), "whoami", "gateway", "::", str(WHOAMI_PORT)))
        yield lab
    finally:
        undo_guest(lab, servers, VM)
        for short in ("mgmt", "tm"):
            lab.run(short, "nft", "delete", "table", *PROBE_TABLE.split(), check=False)
        for key, value in saved.items():
            lab.sysctl(HOST, key, value)
        lab.overlay_script(lab.instances[HOST])  # the hardened sysctls again, as the other lab modules expect


def aim(lab: Lab, short: str, source: str, target: str, bridge: str) -> None:
    """`short` sends to `target` from `source` (an address it claims) straight to host0's `bridge` MAC."""
    lab.ip(short, "addr", "add", f"{source}/32", "dev", "eth0")
    lab.ip(short, "route", "replace", f"{target}/32", "dev", "eth0", "src", source)
    lab.ip(short, "neigh", "replace", target, "lladdr", mac_of(lab, HOST, bridge), "dev", "eth0")


def arrived(lab: Lab, short: str, target: str, port: int, probe_host: str, counter: str) -> int:
    """`short` opens a connection to target:port (it never completes: the answer goes
    elsewhere); how many of its SYNs `probe_host` counted."""
    before = lab.counter(counter, probe_host, PROBE_TABLE)
    sent = packets_sent(lab, short, lambda: lab.tool(short, "tcp", target, str(port), "1.5", check=False))
    assert sent >= 1, f"{short}'s SYN never left"
    return lab.counter(counter, probe_host, PROBE_TABLE) - before


def tenant_syns(lab: Lab) -> int:
    return arrived(lab, TENANT, MGMT.overlay, UI_PORT, "mgmt", "spoofed")


def vm_syns(lab: Lab) -> int:
    return arrived(lab, VM, TROUBLEMAKER.underlay, NFS_PORT, "tm", "from_host0")


def boot_state(lab: Lab) -> None:
    """What the boot leaves: its sysctl file applied (the default network it stops is gone)."""
    lab.run(HOST, "sysctl", "-q", "-p", lab.no_routing_file)
    assert lab.run(HOST, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"


@contextlib.contextmanager
def libvirt_default_network(lab: Lab):
    """host0 as libvirt leaves it with its default network up: virbr0 holding 192.168.122.1/24,
    that network masqueraded to anywhere else (network_iptables.c, the MASQUERADE rule of a
    <forward mode='nat'/> without a dev; its FORWARD rules concern virbr0 only), forwarding on.
    Stopped (net-destroy): the bridge and the rules go, forwarding stays on."""
    lab.ip(HOST, "link", "add", VIRBR, "type", "bridge")
    lab.ip(HOST, "addr", "add", VIRBR_ADDRESS, "dev", VIRBR)
    lab.ip(HOST, "link", "set", VIRBR, "up")
    lab.run(HOST, "nft", "-f", "-", input=f"""
table ip csl_libvirt_nat {{
    chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;
        ip saddr {VIRBR_NET} ip daddr != {VIRBR_NET} masquerade
    }}
}}
""")
    lab.sysctl(HOST, "net.ipv4.ip_forward", 1)
    try:
        yield
    finally:
        lab.run(HOST, "nft", "delete", "table", "ip", "csl_libvirt_nat", check=False)
        lab.ip(HOST, "link", "del", VIRBR, check=False)


@pytest.mark.parametrize("rp_filter", [KERNEL_DEFAULTS["net.ipv4.conf.all.rp_filter"], 2],
                         ids=["rp-filter-kernel-default", "rp-filter-overlay-script"])
def test_tenant_on_a_guest_bridge_reaches_the_management_server_only_through_a_forwarding_host(
        routing: Lab, rp_filter: int):
    for key in ("net.ipv4.conf.all.rp_filter", f"net.ipv4.conf.{GUEST_BRIDGE}.rp_filter"):
        routing.sysctl(HOST, key, rp_filter)
    try:
        # Forwarding as libvirt leaves it (the default network started once, stopped or not).
        routing.sysctl(HOST, "net.ipv4.ip_forward", 1)
        got = tenant_syns(routing)
        if rp_filter:
            assert got == 0, "the reverse-path filter admits no source through an address-less bridge"
        else:
            assert got >= 1, "a forwarding host should have routed the forged SYN into cloudbr0"
        boot_state(routing)
        assert tenant_syns(routing) == 0
    finally:
        routing.overlay_script(routing.instances[HOST])  # its rp_filter again


def test_vm_on_cloudbr0_reaches_the_subnet_through_libvirts_nat_only_while_the_host_forwards(routing: Lab):
    with libvirt_default_network(routing):
        assert vm_syns(routing) >= 1, "the VM's SYN should have left through host0's own address"
        boot_state(routing)  # forwarding off: even with the network's masquerade in place, nothing passes
        assert vm_syns(routing) == 0


@pytest.mark.parametrize("br_netfilter", [0, 1], ids=["bridge-nf-off", "bridge-nf-on"])
def test_tenant_still_reaches_its_gateway_with_forwarding_off(routing: Lab, br_netfilter: int):
    # Bridged frames never need the host's forwarding, with br_netfilter (whose bridged
    # IPv4/IPv6 pass the inet forward hook) or without.
    for family in ("iptables", "ip6tables"):
        routing.sysctl(HOST, f"net.bridge.bridge-nf-call-{family}", br_netfilter)
    boot_state(routing)
    assert connect(routing, TENANT, GATEWAY_IP, WHOAMI_PORT) == (True, f"gateway ::ffff:{TENANT_IP}")
    ok, output = connect(routing, TENANT, f"{link_local(routing, GATEWAY, 'eth0')}%eth0", WHOAMI_PORT)
    assert ok and output.startswith("gateway fe80::"), output
