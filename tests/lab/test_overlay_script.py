"""overlay-network.sh on its own: shellcheck, and bad input rejected before any change.

The validation tests run the script inside a scratch namespace (never on the
machine's own network), and check that the namespace is exactly as before.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import require_root
from .netlab import ROUTER_ISOLATION, SCRIPT, Lab

UNDERLAY = "10.99.1.20/24"
GOOD = {
    "OVERLAY_ROLE": "member",
    "VXLAN_ID": "100",
    "VXLAN_GROUP": "239.255.42.1",
    "OVERLAY_ADDRESS": "10.100.0.2/16",
    "OVERLAY_GATEWAY": "10.100.0.1",
    "OVERLAY_MTU": "8450",
    "VPC_CIDR": "10.99.0.0/16",
}
GOOD_ROUTER = {**GOOD, "OVERLAY_ROLE": "router", "OVERLAY_ADDRESS": "10.100.0.1/16", "OVERLAY_GATEWAY": "",
               "ROUTER_DNAT": "tcp:8080:10.100.0.2:8080", **ROUTER_ISOLATION}
#: The router with a console address (its second private IP), the system VMs' public
#: range (ipplan system_public_range of 10.100.0.0/16) and the console forwards as
#: components/model/consoles.console_forwards writes them (10.100.192.3: in that range).
CONSOLE_RANGE = "10.100.192.1-10.100.192.8"
GOOD_CONSOLE = {**GOOD_ROUTER, "CONSOLE_ADDRESS": "10.99.1.11", "CONSOLE_RANGE": CONSOLE_RANGE}
CONSOLE = "tcp:80:10.100.192.3:80 tcp:8080:10.100.192.3:8080"
CONSOLE_SHAPE = "'tcp:80:IP:80 tcp:8080:IP:8080'"


def test_script_passes_debian_shellcheck():
    # Debian's shellcheck (package shellcheck, .ci/apt-packages.txt), at its Debian path.
    shellcheck = "/usr/bin/shellcheck"
    assert os.access(shellcheck, os.X_OK), "install Debian's shellcheck (listed in .ci/apt-packages.txt)"
    # -x: the router's part (overlay-router.sh) is sourced, and checked with it.
    result = subprocess.run([shellcheck, "-x", "--shell=bash", "--severity=style", str(SCRIPT),
                             str(SCRIPT.parent / "overlay-router.sh")],
                            capture_output=True, text=True, timeout=60, cwd=SCRIPT.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_script_documents_every_variable_it_reads():
    text = SCRIPT.read_text()
    header = text.split("set -euo pipefail")[0]
    for name in ("OVERLAY_ROLE", "UNDERLAY_DEV", "VXLAN_ID", "VXLAN_GROUP", "VXLAN_PORT", "OVERLAY_ADDRESS",
                 "OVERLAY_GATEWAY", "OVERLAY_MTU", "VPC_CIDR", "ROUTER_DNAT", "INTERNET_MTU", "INFRA_CIDR",
                 "SYSTEM_RANGE", "STORAGE_CIDR", "TENANT_VPC_ACCESS", "VM_FORWARDS", "CONSOLE_ADDRESS",
                 "CONSOLE_FORWARDS", "CONSOLE_RANGE"):
        assert f"#   {name} " in header, f"{name} is not documented at the top of the script"


@pytest.fixture(scope="module")
def scratch():
    """A namespace with an underlay device like an instance's (ens5, MTU 9001,
    default route) and a second one with MTU 1500."""
    require_root()
    lab = Lab()
    try:
        lab.add_ns("scratch")
        lab.veth("scratch", "ens5", "scratch", "peer5", 9001)
        lab.ip("scratch", "addr", "add", UNDERLAY, "dev", "ens5")
        lab.ip("scratch", "route", "add", "default", "via", "10.99.1.1")
        lab.veth("scratch", "small0", "scratch", "peer0", 1500)
        lab.ip("scratch", "addr", "add", "10.99.3.5/24", "dev", "small0")
        lab.add_ns("bare")  # no default route at all
        lab.veth("bare", "ens5", "bare", "peer5", 9001)
        lab.ip("bare", "addr", "add", UNDERLAY, "dev", "ens5")
        yield lab
    finally:
        lab.teardown()


def run_script(lab: Lab, ns: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **env}
    return lab.run(ns, "bash", str(SCRIPT), env=full, check=False)


BAD = [
    # (base, variable, value, words the message must contain)
    (GOOD, "OVERLAY_ROLE", "", "router or member"),
    (GOOD, "OVERLAY_ROLE", "gateway", "router or member"),
    (GOOD, "VXLAN_ID", "0", "1..16777215"),
    (GOOD, "VXLAN_ID", "16777216", "1..16777215"),
    (GOOD, "VXLAN_ID", "abc", "1..16777215"),
    (GOOD, "VXLAN_GROUP", "10.0.0.1", "224.0.0.0/4"),
    (GOOD, "VXLAN_GROUP", "240.0.0.1", "224.0.0.0/4"),
    (GOOD, "VXLAN_GROUP", "239.255.1", "224.0.0.0/4"),
    (GOOD, "VXLAN_PORT", "0", "1..65535"),
    (GOOD, "VXLAN_PORT", "65536", "1..65535"),
    (GOOD, "OVERLAY_ADDRESS", "10.100.0.2", "address/prefix"),
    (GOOD, "OVERLAY_ADDRESS", "10.100.0.0/16", "network or broadcast"),
    (GOOD, "OVERLAY_ADDRESS", "10.100.255.255/16", "network or broadcast"),
    (GOOD, "OVERLAY_ADDRESS", "256.1.1.1/16", "address/prefix"),
    (GOOD, "OVERLAY_ADDRESS", "10.100.0.2/31", "prefix 8..30"),
    (GOOD, "OVERLAY_ADDRESS", "10.99.200.2/24", "overlaps VPC_CIDR"),
    ({**GOOD, "VPC_CIDR": ""}, "OVERLAY_ADDRESS", "10.99.1.77/16", "overlaps the underlay subnet"),
    (GOOD, "OVERLAY_GATEWAY", "", "router's overlay"),
    (GOOD, "OVERLAY_GATEWAY", "10.101.0.1", "inside the overlay subnet"),
    (GOOD, "OVERLAY_GATEWAY", "10.100.0.2", "own address"),
    (GOOD, "OVERLAY_MTU", "", "1280..8450"),
    (GOOD, "OVERLAY_MTU", "1279", "1280..8450"),
    (GOOD, "OVERLAY_MTU", "8451", "1280..8450"),
    (GOOD, "OVERLAY_MTU", "9001", "1280..8450"),
    (GOOD, "VPC_CIDR", "10.99.0.1/16", "host bits zero"),
    (GOOD, "VPC_CIDR", "10.0.0.0/8", "prefix 16..28"),
    (GOOD, "VPC_CIDR", "10.98.0.0/16", "does not contain the underlay address"),
    (GOOD_ROUTER, "VPC_CIDR", "", "router needs"),
    (GOOD, "ROUTER_DNAT", "tcp:8080:10.100.0.3:8080", "only the router"),
    (GOOD_ROUTER, "ROUTER_DNAT", "tcp:8080:10.100.0.2", "proto:port:target_ip:target_port"),
    (GOOD_ROUTER, "ROUTER_DNAT", "icmp:1:10.100.0.2:1", "proto:port:target_ip:target_port"),
    (GOOD_ROUTER, "ROUTER_DNAT", "tcp:70000:10.100.0.2:80", "proto:port:target_ip:target_port"),
    (GOOD_ROUTER, "ROUTER_DNAT", "tcp:8080:10.101.0.2:8080", "inside the overlay subnet"),
    (GOOD_ROUTER, "OVERLAY_GATEWAY", "10.100.0.9", "unset or its own address"),
    (GOOD_ROUTER, "INTERNET_MTU", "1279", "1280..9001"),
    (GOOD_ROUTER, "INTERNET_MTU", "9002", "1280..9001"),
    (GOOD_ROUTER, "INTERNET_MTU", "", "1280..9001"),
    (GOOD_ROUTER, "INFRA_CIDR", "", "infrastructure block"),
    (GOOD_ROUTER, "INFRA_CIDR", "10.100.0.1/18", "host bits zero"),
    (GOOD_ROUTER, "INFRA_CIDR", "10.101.0.0/18", "inside the overlay subnet"),
    (GOOD_ROUTER, "INFRA_CIDR", "10.100.64.0/18", "router's own address"),
    (GOOD_ROUTER, "SYSTEM_RANGE", "", "first-last"),
    (GOOD_ROUTER, "SYSTEM_RANGE", "10.100.64.250-10.100.64.1", "first-last"),
    (GOOD_ROUTER, "SYSTEM_RANGE", "10.100.0.50-10.100.0.60", "overlaps INFRA_CIDR"),
    (GOOD_ROUTER, "SYSTEM_RANGE", "10.101.64.1-10.101.64.9", "inside the overlay subnet"),
    (GOOD_ROUTER, "STORAGE_CIDR", "", "dedicated subnet"),
    (GOOD_ROUTER, "STORAGE_CIDR", "10.98.1.0/24", "inside VPC_CIDR"),
    (GOOD_ROUTER, "TENANT_VPC_ACCESS", "10.99.9.1/24", "host bits zero"),
    (GOOD_ROUTER, "TENANT_VPC_ACCESS", "0.0.0.0/0", "not 0.0.0.0/0"),
    (GOOD_ROUTER, "TENANT_VPC_ACCESS", "169.254.0.0/20", "never reach"),
    (GOOD_ROUTER, "TENANT_VPC_ACCESS", "10.100.4.0/24", "overlaps the overlay"),
    (GOOD, "STORAGE_CIDR", "10.99.1.0/24", "router's"),
    (GOOD, "VM_FORWARDS", "tcp:2222:10.100.128.5:22", "only the router"),
    (GOOD_ROUTER, "VM_FORWARDS", "tcp:2222:10.100.128.5", "proto:port:target_ip:target_port"),
    (GOOD, "CONSOLE_ADDRESS", "10.99.1.11", "only the router"),
    (GOOD, "CONSOLE_FORWARDS", CONSOLE, "only the router"),
    (GOOD_ROUTER, "CONSOLE_ADDRESS", "10.98.1.11", "inside VPC_CIDR"),
    (GOOD_ROUTER, "CONSOLE_ADDRESS", "10.99.1.256", "inside VPC_CIDR"),
    (GOOD_ROUTER, "CONSOLE_ADDRESS", "10.99.1.0/24", "inside VPC_CIDR"),
    (GOOD_ROUTER, "CONSOLE_FORWARDS", CONSOLE, "needs CONSOLE_ADDRESS"),
    (GOOD, "CONSOLE_RANGE", CONSOLE_RANGE, "only the router"),
    (GOOD_CONSOLE, "CONSOLE_RANGE", "10.100.192.8-10.100.192.1", "first-last"),
    (GOOD_CONSOLE, "CONSOLE_RANGE", "10.100.192.1", "first-last"),
    (GOOD_CONSOLE, "CONSOLE_RANGE", "10.100.192.1-10.101.0.8", "inside the overlay"),
    (GOOD_CONSOLE, "CONSOLE_RANGE", "10.99.1.1-10.99.1.8", "inside the overlay"),
    # The console proxy's address outside the system VMs' public range: perhaps a
    # tenant's (the proxy was recreated and its former address handed out).
    (GOOD_CONSOLE, "CONSOLE_FORWARDS", "tcp:80:10.100.128.7:80 tcp:8080:10.100.128.7:8080", "outside CONSOLE_RANGE"),
    (GOOD_CONSOLE, "CONSOLE_FORWARDS", "tcp:80:10.100.192.9:80 tcp:8080:10.100.192.9:8080", "outside CONSOLE_RANGE"),
    ({**GOOD_CONSOLE, "CONSOLE_RANGE": ""}, "CONSOLE_FORWARDS", CONSOLE, "needs a valid CONSOLE_RANGE"),
    # Exactly what console_forwards writes: both ports, same port on both sides, one target.
    (GOOD_CONSOLE, "CONSOLE_FORWARDS", "tcp:80:10.100.128.7:80", CONSOLE_SHAPE),
    (GOOD_CONSOLE, "CONSOLE_FORWARDS", "tcp:443:10.100.128.7:443 tcp:8080:10.100.128.7:8080", CONSOLE_SHAPE),
    (GOOD_CONSOLE, "CONSOLE_FORWARDS", "tcp:80:10.100.128.7:80 tcp:8080:10.100.128.8:8080", CONSOLE_SHAPE),
    (GOOD_CONSOLE, "CONSOLE_FORWARDS", "tcp:80:10.100.128.7:8080 tcp:8080:10.100.128.7:80", CONSOLE_SHAPE),
    (GOOD_CONSOLE, "CONSOLE_FORWARDS", "udp:80:10.100.128.7:80 udp:8080:10.100.128.7:8080", CONSOLE_SHAPE),
    (GOOD_CONSOLE, "CONSOLE_FORWARDS", "tcp:80:10.100.128.7:80 tcp:8080:10.100.128.7:8080 tcp:22:10.100.128.7:22",
     CONSOLE_SHAPE),
    (GOOD_CONSOLE, "CONSOLE_FORWARDS", "none", CONSOLE_SHAPE),  # router.sh turns the parameter's "none" into ""
    (GOOD, "INTERNET_MTU", "1500b", "1280..9001"),
    (GOOD, "UNDERLAY_DEV", "nosuchdev0", "existing network device"),
    (GOOD, "UNDERLAY_DEV", "bad name!", "existing network device"),
]


def assert_rejected_without_change(lab: Lab, ns: str, env: dict, variable: str, value: str, words: str):
    before = lab.state(ns)
    result = run_script(lab, ns, env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{variable}='{value}' is invalid" in result.stderr, result.stderr
    assert words in result.stderr, result.stderr
    assert "nothing was changed" in result.stderr
    assert lab.state(ns) == before


@pytest.mark.lab
@pytest.mark.parametrize("base,variable,value,words", BAD, ids=[f"{v}={x!r}" for _, v, x, _ in BAD])
def test_bad_variable_is_named_and_nothing_changes(scratch: Lab, base, variable, value, words):
    assert_rejected_without_change(scratch, "scratch", {**base, variable: value}, variable, value, words)


@pytest.mark.lab
def test_every_bad_variable_is_reported_at_once(scratch: Lab):
    env = {**GOOD, "VXLAN_ID": "0", "OVERLAY_MTU": "99999", "VXLAN_GROUP": "1.2.3.4"}
    result = run_script(scratch, "scratch", env)
    assert result.returncode == 2
    for name in ("VXLAN_ID='0'", "OVERLAY_MTU='99999'", "VXLAN_GROUP='1.2.3.4'"):
        assert name in result.stderr, result.stderr


@pytest.mark.lab
def test_underlay_too_small_for_the_overlay_mtu_fails_clearly(scratch: Lab):
    # small0 has MTU 1500: an 8450 overlay would need 8500. Fail, never lower silently.
    assert_rejected_without_change(scratch, "scratch", {**GOOD, "UNDERLAY_DEV": "small0", "VPC_CIDR": ""},
                                   "OVERLAY_MTU", "8450", "has MTU 1500")
    result = run_script(scratch, "scratch", {**GOOD, "UNDERLAY_DEV": "small0", "VPC_CIDR": ""})
    assert "expected at most 1450" in result.stderr


@pytest.mark.lab
def test_missing_default_route_and_no_underlay_dev_is_an_error(scratch: Lab):
    assert_rejected_without_change(scratch, "bare", GOOD, "UNDERLAY_DEV", "", "no IPv4 default route")


@pytest.mark.lab
def test_existing_non_bridge_cloudbr0_is_refused(scratch: Lab):
    scratch.veth("scratch", "cloudbr0", "scratch", "peerc", 9001)
    try:
        before = scratch.state("scratch")
        result = run_script(scratch, "scratch", GOOD)
        assert result.returncode == 2 and "is not a bridge" in result.stderr, result.stderr
        assert scratch.state("scratch") == before
    finally:
        scratch.ip("scratch", "link", "del", "cloudbr0")


@pytest.mark.lab
def test_underlay_mtu_exactly_overlay_plus_50_is_accepted(scratch: Lab):
    # The boundary the MTU check guards: 1450 + 50 = 1500 fits small0.
    scratch.add_ns("edge")
    try:
        scratch.veth("edge", "ens5", "edge", "peer5", 1500)
        scratch.ip("edge", "addr", "add", UNDERLAY, "dev", "ens5")
        scratch.ip("edge", "route", "add", "default", "via", "10.99.1.1")
        result = run_script(scratch, "edge", {**GOOD, "OVERLAY_MTU": "1450"})
        assert result.returncode == 0, result.stderr
        for dev in ("cloudbr0", "ethovl0"):
            assert scratch.run("edge", "cat", f"/sys/class/net/{dev}/mtu").stdout.strip() == "1450"
        # A second run on the member whose default route now points into the
        # overlay still finds its underlay (from ethovl0) and changes nothing.
        before = scratch.state("edge")
        again = run_script(scratch, "edge", {**GOOD, "OVERLAY_MTU": "1450"})
        assert again.returncode == 0, again.stderr
        assert scratch.state("edge") == before
        too_big = run_script(scratch, "edge", {**GOOD, "OVERLAY_MTU": "1451"})
        assert too_big.returncode == 2 and "OVERLAY_MTU='1451'" in too_big.stderr
    finally:
        scratch.del_ns("edge")


@pytest.mark.lab
def test_changed_vxlan_settings_recreate_the_device(scratch: Lab):
    scratch.add_ns("change")
    try:
        scratch.veth("change", "ens5", "change", "peer5", 9001)
        scratch.ip("change", "addr", "add", UNDERLAY, "dev", "ens5")
        scratch.ip("change", "route", "add", "default", "via", "10.99.1.1")
        assert run_script(scratch, "change", GOOD).returncode == 0
        result = run_script(scratch, "change", {**GOOD, "VXLAN_ID": "200", "VXLAN_PORT": "4790"})
        assert result.returncode == 0 and "replacing ethovl0" in result.stdout, result.stdout + result.stderr
        details = scratch.ip("change", "-d", "link", "show", "ethovl0").stdout
        assert "vxlan id 200 group 239.255.42.1 local 10.99.1.20 dev ens5" in details and "dstport 4790" in details, details
        assert "master cloudbr0" in details
        assert "default via 10.100.0.1 dev cloudbr0" in scratch.ip("change", "route").stdout
    finally:
        scratch.del_ns("change")



@pytest.mark.lab
def test_router_clamps_to_internet_mtu_minus_40(scratch: Lab):
    # The clamp follows INTERNET_MTU (here the lowest accepted, 1280 -> MSS 1240),
    # in both directions, and only for traffic between the overlay and outside the VPC.
    scratch.add_ns("rtr")
    try:
        scratch.veth("rtr", "ens5", "rtr", "peer5", 9001)
        scratch.ip("rtr", "addr", "add", "10.99.1.10/24", "dev", "ens5")
        scratch.ip("rtr", "route", "add", "default", "via", "10.99.1.1")
        env = {**GOOD_ROUTER, "INTERNET_MTU": "1280"}
        result = run_script(scratch, "rtr", env)
        assert result.returncode == 0, result.stderr
        assert "internet MSS 1240" in result.stdout
        table = scratch.run("rtr", "nft", "list", "table", "ip", "cloudstack_overlay").stdout
        clamps = [line.strip() for line in table.splitlines() if "maxseg size set" in line]
        assert clamps == [
            "ip saddr 10.100.0.0/16 ip daddr != 10.99.0.0/16 tcp flags & syn == syn "
            "tcp option maxseg size > 1240 tcp option maxseg size set 1240",
            "ip daddr 10.100.0.0/16 ip saddr != 10.99.0.0/16 tcp flags & syn == syn "
            "tcp option maxseg size > 1240 tcp option maxseg size set 1240",
        ], table
        assert "hook forward priority mangle" in table, table
        before = scratch.state("rtr")
        assert run_script(scratch, "rtr", env).returncode == 0
        assert scratch.state("rtr") == before
    finally:
        scratch.del_ns("rtr")


@pytest.mark.lab
def test_agent_builds_the_highest_guest_vlan_bridge_on_the_overlay_port(scratch: Lab):
    # What the KVM agent does for guest VLAN 4094 with traffic label cloudbr0
    # (BridgeVifDriver.createVnetBr -> modifyvlan.sh): VLAN device <port>.<vlan>
    # on the bridge's physical port, bridge br<port>-<vlan>, device enslaved.
    scratch.add_ns("vlan")
    try:
        scratch.veth("vlan", "ens5", "vlan", "peer5", 9001)
        scratch.ip("vlan", "addr", "add", UNDERLAY, "dev", "ens5")
        scratch.ip("vlan", "route", "add", "default", "via", "10.99.1.1")
        # A port under the former name, as an instance upgraded in place has it.
        scratch.ip("vlan", "link", "add", "name", "ethvxlan0", "type", "vxlan", "id", "100", "group",
                   "239.255.42.1", "dev", "ens5", "dstport", "4789")
        result = run_script(scratch, "vlan", GOOD)
        assert result.returncode == 0, result.stderr
        assert "removing ethvxlan0" in result.stdout
        ports = scratch.run("vlan", "ls", "/sys/class/net/cloudbr0/brif").stdout.split()
        assert ports == ["ethovl0"], ports
        # The former name: Linux refuses the agent's bridge (16 characters).
        refused = scratch.ip("vlan", "link", "add", "name", "brethvxlan0-4094", "type", "bridge", check=False)
        assert refused.returncode != 0
        vlan_dev = scratch.ip("vlan", "link", "add", "link", "ethovl0", "name", "ethovl0.4094", "type", "vlan",
                              "id", "4094", check=False)
        if vlan_dev.returncode != 0:
            # Kernels built without 802.1Q (8021q; e.g. this project's Firecracker
            # test VMs) have no "vlan" link type: the name, which is what this test
            # is about, still goes through the kernel's name check on a veth.
            assert "Unknown device type" in vlan_dev.stderr, vlan_dev.stderr
            scratch.veth("vlan", "ethovl0.4094", "vlan", "peer4094", 8450)
        scratch.ip("vlan", "link", "add", "name", "brethovl0-4094", "type", "bridge")
        scratch.ip("vlan", "link", "set", "ethovl0.4094", "master", "brethovl0-4094")
        scratch.ip("vlan", "link", "set", "ethovl0.4094", "up")
        scratch.ip("vlan", "link", "set", "brethovl0-4094", "up")
        details = scratch.ip("vlan", "-d", "link", "show", "ethovl0.4094").stdout
        assert "master brethovl0-4094" in details, details
        assert vlan_dev.returncode != 0 or "vlan protocol 802.1Q id 4094" in details, details
        # A re-run leaves the agent's devices alone.
        assert run_script(scratch, "vlan", GOOD).returncode == 0
        assert "master brethovl0-4094" in scratch.ip("vlan", "-d", "link", "show", "ethovl0.4094").stdout
    finally:
        scratch.del_ns("vlan")


@pytest.mark.lab
@pytest.mark.parametrize("target, words", [
    ("10.100.0.2", "infrastructure address"),   # the management server
    ("10.100.0.1", "another address inside the overlay"),  # the router itself
    ("10.100.64.9", "system range"),            # a system VM's private NIC
    ("10.101.0.9", "another address inside the overlay"),
])
def test_console_forwards_reach_tenant_addresses_only(scratch: Lab, target: str, words: str):
    # Besides CONSOLE_RANGE, each entry gets VM_FORWARDS' checks: even with a range
    # around it, an infrastructure or system address is refused, named by its entry.
    value = f"tcp:80:{target}:80 tcp:8080:{target}:8080"
    env = {**GOOD_CONSOLE, "CONSOLE_FORWARDS": value, "CONSOLE_RANGE": f"{target}-{target}"}
    assert_rejected_without_change(scratch, "scratch", env, "CONSOLE_FORWARDS", f"tcp:80:{target}:80", words)


@pytest.mark.lab
def test_console_forwards_come_from_the_console_address_only(scratch: Lab):
    # 8080 on the console address is the console's websocket, 8080 on the underlay
    # address the UI: one port, two destinations, two rules. Nothing else of the
    # console address is forwarded.
    scratch.add_ns("con")
    try:
        scratch.veth("con", "ens5", "con", "peer5", 9001)
        scratch.ip("con", "addr", "add", "10.99.1.10/24", "dev", "ens5")
        scratch.ip("con", "route", "add", "default", "via", "10.99.1.1")
        env = {**GOOD_CONSOLE, "CONSOLE_FORWARDS": CONSOLE}
        result = run_script(scratch, "con", env)
        assert result.returncode == 0, result.stderr
        assert "console address 10.99.1.11" in result.stdout
        table = scratch.run("con", "nft", "list", "table", "ip", "cloudstack_overlay").stdout
        dnat = [line.strip() for line in table.splitlines() if " dnat to " in line]
        assert dnat == [
            'iifname "ens5" ip daddr 10.99.1.10 tcp dport 8080 dnat to 10.100.0.2:8080',
            'iifname "ens5" ip daddr 10.99.1.11 tcp dport 80 dnat to 10.100.192.3:80',
            'iifname "ens5" ip daddr 10.99.1.11 tcp dport 8080 dnat to 10.100.192.3:8080',
        ], table
        # The address is not put on any interface (EC2 delivers it to the ENI).
        assert "10.99.1.11" not in scratch.ip("con", "-4", "addr", "show").stdout
        before = scratch.state("con")
        assert run_script(scratch, "con", env).returncode == 0
        assert scratch.state("con") == before
        # Whatever else is addressed to it is never routed on (tests/lab/test_consoles_lab.py).
        # Routed (forward) or local (input: when the address is on ens5, cloud-init's
        # doing), except replies to the router's own connections from it.
        refused = [line.strip() for line in table.splitlines() if 'name "console_refused"' in line]
        assert refused == CONSOLE_REFUSED, table
        # No console forwards (the parameter's "none"): the console address forwards nothing.
        assert run_script(scratch, "con", {**GOOD_CONSOLE, "CONSOLE_FORWARDS": ""}).returncode == 0
        table = scratch.run("con", "nft", "list", "table", "ip", "cloudstack_overlay").stdout
        assert [line.strip() for line in table.splitlines() if "10.99.1.11" in line] == CONSOLE_REFUSED, table
        # No console address: no rule of it.
        assert run_script(scratch, "con", GOOD_ROUTER).returncode == 0
        table = scratch.run("con", "nft", "list", "table", "ip", "cloudstack_overlay").stdout
        assert "10.99.1.11" not in table and 'name "console_refused"' not in table, table
    finally:
        scratch.del_ns("con")


#: The router's two rules for what reaches its console address and is not a console forward.
CONSOLE_REFUSED = ['ip daddr 10.99.1.11 counter name "console_refused" drop',
                   'ip daddr 10.99.1.11 ct state ! established,related counter name "console_refused" drop']


@pytest.mark.lab
@pytest.mark.parametrize("console_first", [True, False], ids=["console-listed-first", "console-listed-second"])
def test_the_underlay_address_is_never_the_console_address(scratch: Lab, console_first: bool):
    # Ubuntu's cloud-init puts the ENI's secondary address on ens5 (DataSourceEc2,
    # apply_full_imds_network_config), before or after the DHCP address.
    scratch.add_ns("ci")
    try:
        scratch.veth("ci", "ens5", "ci", "peer5", 9001)
        order = ["10.99.1.11/24", "10.99.1.10/24"] if console_first else ["10.99.1.10/24", "10.99.1.11/24"]
        for address in order:
            scratch.ip("ci", "addr", "add", address, "dev", "ens5")
        listed = scratch.ip("ci", "-4", "-o", "addr", "show", "dev", "ens5").stdout
        assert listed.index(order[0]) < listed.index(order[1]), listed
        scratch.ip("ci", "route", "add", "default", "via", "10.99.1.1")
        result = run_script(scratch, "ci", {**GOOD_CONSOLE, "CONSOLE_FORWARDS": CONSOLE})
        assert result.returncode == 0, result.stderr
        assert "underlay ens5 (10.99.1.10/24)" in result.stdout, result.stdout
        table = scratch.run("ci", "nft", "list", "table", "ip", "cloudstack_overlay").stdout
        assert 'iifname "ens5" ip daddr 10.99.1.10 tcp dport 8080 dnat to 10.100.0.2:8080' in table, table
        assert "snat to 10.99.1.10" in table and "snat to 10.99.1.11" not in table, table
        # The VTEP is the underlay address, not the device's first address.
        assert " local 10.99.1.10 dev ens5 " in scratch.ip("ci", "-d", "link", "show", "ethovl0").stdout
        # Left where cloud-init put it.
        assert "10.99.1.11/24" in scratch.ip("ci", "-4", "addr", "show", "dev", "ens5").stdout
    finally:
        scratch.del_ns("ci")


@pytest.mark.lab
def test_an_underlay_device_with_only_the_console_address_is_refused(scratch: Lab):
    scratch.add_ns("only")
    try:
        scratch.veth("only", "ens5", "only", "peer5", 9001)
        scratch.ip("only", "addr", "add", "10.99.1.11/24", "dev", "ens5")
        scratch.ip("only", "route", "add", "default", "via", "10.99.1.1")
        before = scratch.state("only")
        result = run_script(scratch, "only", GOOD_CONSOLE)
        assert result.returncode == 2 and "UNDERLAY_DEV='ens5' is invalid" in result.stderr, result.stderr
        assert "CONSOLE_ADDRESS aside" in result.stderr and "nothing was changed" in result.stderr
        assert scratch.state("only") == before
    finally:
        scratch.del_ns("only")
