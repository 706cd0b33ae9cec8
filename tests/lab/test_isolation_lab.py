"""Tenant isolation, proven with real packets in the namespace lab (see netlab.py).

Stand-ins on the overlay, each a namespace plugged into a KVM host's cloudbr0
(as CloudStack plugs a VM's or a system VM's NIC), default route via the router:

    tenant  10.100.128.1 (the first public-range address: a tenant's virtual router)
    sysvm   10.100.64.1  (the first address of the pod's system range)

The router runs overlay-network.sh with the isolation the program renders
(netlab.ROUTER_ISOLATION); the KVM hosts and the management server load the
nftables rules their REAL boot scripts write (run here against the boot fakes of
tests/userdata, with the same overlay CIDR as the lab). An EFS stand-in listens
on TCP 2049 in the CloudStack subnet.

Every check comes with its proof: the same connection is tried again with the
rule(s) responsible removed from the loaded table, and the outcome flips.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

import pytest

from .netlab import (
    DB_ADDRESS, DB_PORT, DNS_NAME, ELASTIC_IP, IMDS, INTERNET_CLIENT, INTERNET_PORT, MGMT, OVERLAY_CIDR, OVERLAY_MTU,
    OVERLAY_PREFIX, RESOLVER, ROUTER, TOOLS, UI_PORT, VPC_CIDR, VXLAN_GROUP, VXLAN_ID, Instance, Lab,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "userdata"))
import bootlab  # noqa: E402  (the boot-script harness: runs the real user data against fakes)

pytestmark = pytest.mark.lab

TENANT_IP = "10.100.128.1"  # components/model/ipplan.py: public range of 10.100.0.0/16 starts here
SYSTEM_IP = "10.100.64.1"   # ... and the pod's system range
EFS = Instance("efs", "10.99.1.60", None, None)
NFS_PORT = 2049
AGENT_PORT = 8250
ROUTER_TABLE = "ip cloudstack_overlay"
HOST_TABLE = "inet cloudstack_ec2_host"
MGMT_TABLE = "inet cloudstack_ec2_management"
REFUSED_TIMEOUT = 1.5
#: The rules each member loaded (namespace -> nft source), to restore after a mutation.
SOURCES: dict[str, str] = {}
#: cloudbr0's MAC on each host before the stand-ins were plugged in.
BRIDGE_MACS: dict[str, str] = {}


def booted(tmp: Path, boot) -> bootlab.Machine:
    """The fake machine after the real boot script of `boot` ran on it, with the lab's
    overlay settings (VPC, VXLAN group and VNI) in its overlay.env: the files it wrote."""
    machine = bootlab.Machine(tmp)
    bootlab.publish_for_hosts(machine)
    overlay = dataclasses.replace(boot.overlay, vpc_cidr=VPC_CIDR, vxlan_group=VXLAN_GROUP, vxlan_id=VXLAN_ID)
    result = machine.run_user_data(bootlab.render(dataclasses.replace(boot, overlay=overlay)))
    assert result.status == 0, result.output
    return machine


def boot_firewall(tmp: Path, boot) -> str:
    """The nftables rules the real boot script of `boot` writes (run against the fakes)."""
    return booted(tmp, boot).file("/etc/cloudstack-ec2/host-firewall.nft").read_text()


def bridge_mac(lab: Lab, host: str) -> str:
    return lab.run(host, "cat", "/sys/class/net/cloudbr0/address").stdout.strip()


def plug(lab: Lab, short: str, host: str, address: str) -> None:
    """A namespace whose NIC is a port of `host`'s cloudbr0, like a VM's tap device."""
    lab.add_ns(short)
    port = f"vm-{short}"[:15]
    # The bridge's MTU is its smallest port's: keep the overlay MTU.
    lab.veth(host, port, short, "eth0", OVERLAY_MTU)
    # As libvirt does for a VM's tap device (first byte 0xFE, virNetDevTapCreateInBridgePort):
    # a bridge takes its lowest port MAC, and the host's cloudbr0 must keep its own
    # when VMs come and go (else its overlay neighbours hold a stale ARP entry).
    lab.ip(host, "link", "set", port, "address", f"fe:54:00:00:00:{len(lab.namespaces):02x}")
    lab.ip(host, "link", "set", port, "master", "cloudbr0")
    lab.ip(short, "addr", "add", f"{address}/{OVERLAY_PREFIX}", "dev", "eth0")
    lab.ip(short, "route", "add", "default", "via", ROUTER.overlay)


@pytest.fixture(scope="module")
def iso(lab: Lab, tmp_path_factory):
    """The session lab plus stand-ins, listeners and the members' firewalls; all
    undone afterwards so the other lab modules see the lab as they built it."""
    host_rules = boot_firewall(tmp_path_factory.mktemp("kvm"), bootlab.KVM_HOST)
    mgmt_rules = boot_firewall(tmp_path_factory.mktemp("mgmt"), bootlab.MANAGEMENT)
    added, servers = [], []
    try:
        lab.add_instance(EFS)
        added.append("efs")
        servers.append(lab.spawn("efs", sys.executable, str(TOOLS), "whoami", "efs", "0.0.0.0", str(NFS_PORT)))
        for port in (22, 16509, 16514):
            servers.append(lab.spawn("host0", sys.executable, str(TOOLS), "whoami", f"host0-{port}", "0.0.0.0",
                                     str(port)))
        servers.append(lab.spawn("mgmt", sys.executable, str(TOOLS), "whoami", "mgmt-agent", "0.0.0.0",
                                 str(AGENT_PORT)))
        BRIDGE_MACS.update({host: bridge_mac(lab, host) for host in ("host0", "host1")})
        plug(lab, "tenant", "host0", TENANT_IP)
        plug(lab, "sysvm", "host1", SYSTEM_IP)
        SOURCES.update(host0=host_rules, host1=host_rules, mgmt=mgmt_rules)
        for short, rules in SOURCES.items():
            lab.run(short, "nft", "-f", "-", input=rules)
        yield lab
    finally:
        for server in servers:
            lab.stop(server)
        for short in ("tenant", "sysvm"):
            lab.del_ns(short)
        for host in ("host0", "host1"):
            lab.run(host, "nft", "delete", "table", *HOST_TABLE.split(), check=False)
        lab.run("mgmt", "nft", "delete", "table", *MGMT_TABLE.split(), check=False)
        for name in added:
            lab.remove_instance(name)


def connect(lab: Lab, client: str, address: str, port: int, timeout: float = 3) -> tuple[bool, str]:
    result = lab.tool(client, "tcp", address, str(port), str(timeout), check=False, timeout=timeout + 10)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def resolves(lab: Lab, client: str) -> bool:
    result = lab.tool(client, "resolve", RESOLVER, DNS_NAME, "2", check=False, timeout=15)
    return result.returncode == 0 and result.stdout.strip() == DB_ADDRESS


@contextlib.contextmanager
def without(lab: Lab, short: str, table: str, *lines: tuple[str, str]):
    """The table with each (chain, text) rule line removed, or edited when the
    text is "old=>new"; the original table is restored afterwards."""
    mutated = lab.run(short, "nft", "list", "table", *table.split()).stdout
    for chain, text in lines:
        old, _, new = text.partition("=>")
        block = re.search(rf"\tchain {chain} {{\n.*?\n\t}}\n", mutated, re.S)
        assert block, f"no chain {chain} in {table} on {short}"
        body = block.group(0)
        hits = [line for line in body.splitlines() if old in line]
        assert len(hits) == 1, f"{text!r} matches {len(hits)} rule lines in chain {chain}: {hits}"
        edited = hits[0].replace(old, new) if new else None
        body = body.replace(hits[0] + "\n", "" if edited is None else edited + "\n")
        mutated = mutated.replace(block.group(0), body)
    lab.run(short, "nft", "-f", "-", input=f"delete table {table}\n" + mutated)
    try:
        yield
    finally:
        # From the source, not from the listing (nft lists some sets in a form
        # that loads differently, e.g. a one-range set).
        if short == "router":
            lab.overlay_script(ROUTER)
        else:
            lab.run(short, "nft", "-f", "-", input=SOURCES[short])


def counter(lab: Lab, name: str) -> int:
    return lab.counter(name, "router", ROUTER_TABLE)


# --- tenants: the internet and DNS, nothing of the cloud's own -----------------------------


def test_tenant_reaches_the_internet_through_router_nat(iso: Lab):
    assert connect(iso, "tenant", INTERNET_CLIENT, INTERNET_PORT) == (True, f"internet {ELASTIC_IP}")
    # Its rule: the router's source NAT (without it the internet cannot answer).
    with without(iso, "router", ROUTER_TABLE, ("postrouting", f"ip daddr != 10.99.0.0/16 snat to {ROUTER.underlay}")):
        assert not connect(iso, "tenant", INTERNET_CLIENT, INTERNET_PORT, REFUSED_TIMEOUT)[0]


def test_tenant_resolves_names_through_the_vpc_resolver(iso: Lab):
    assert resolves(iso, "tenant")
    with without(iso, "router", ROUTER_TABLE, ("from_tenant", f"ip daddr {RESOLVER}")):
        assert not resolves(iso, "tenant")


@pytest.mark.parametrize("address, port, what", [
    (DB_ADDRESS, DB_PORT, "the database subnet"),
    (EFS.underlay, NFS_PORT, "the EFS mount target"),
])
def test_tenant_cannot_reach_the_vpc(iso: Lab, address: str, port: int, what: str):
    refused = counter(iso, "tenant_refused")
    ok, output = connect(iso, "tenant", address, port, REFUSED_TIMEOUT)
    assert not ok, f"a tenant reached {what}: {output}"
    assert counter(iso, "tenant_refused") > refused, "refused by another rule than the tenants' VPC rule"
    with without(iso, "router", ROUTER_TABLE, ("from_tenant", "tenant_refused")):
        ok, output = connect(iso, "tenant", address, port)
        assert ok and output.endswith(TENANT_IP), output


def test_tenant_cannot_reach_the_routers_instance_metadata(iso: Lab):
    refused = counter(iso, "link_local_refused")
    ok, output = connect(iso, "tenant", IMDS, 80, REFUSED_TIMEOUT)
    assert not ok, f"a tenant reached {IMDS}: {output}"
    assert counter(iso, "link_local_refused") > refused
    # Both layers out (the link-local rule and 169.254/16 among the tenants'
    # non-internet destinations): IMDS answers, and sees the ROUTER's address.
    with without(iso, "router", ROUTER_TABLE, ("from_overlay", "link_local_refused"),
                 ("from_tenant", "169.254.0.0/16, =>")):
        assert connect(iso, "tenant", IMDS, 80) == (True, f"imds {ROUTER.underlay}")


def test_tenant_cannot_open_connections_to_the_router_itself(iso: Lab):
    ok, output = connect(iso, "tenant", ROUTER.overlay, 7000, REFUSED_TIMEOUT)
    assert not ok, output
    with without(iso, "router", ROUTER_TABLE, ("input", "router_refused")):
        assert connect(iso, "tenant", ROUTER.overlay, 7000) == (True, f"router {TENANT_IP}")


@pytest.mark.parametrize("port", [16509, 16514, 22])
def test_tenant_cannot_reach_a_hosts_libvirt_or_ssh(iso: Lab, port: int):
    host0 = iso.instances["host0"].overlay
    ok, output = connect(iso, "tenant", host0, port, REFUSED_TIMEOUT)
    assert not ok, f"a tenant reached host0:{port}: {output}"
    # Two layers: the peer ports' rule and "nothing from tenants".
    with without(iso, "host0", HOST_TABLE, ("input", "16514, 49152-49216 } ip saddr != {"),
                  ("input", "ip saddr 10.100.0.0/16 ip saddr != {")):
        assert connect(iso, "tenant", host0, port) == (True, f"host0-{port} {TENANT_IP}")


def test_management_server_reaches_a_hosts_libvirt_and_ssh(iso: Lab):
    host0 = iso.instances["host0"].overlay
    for port in (16509, 16514, 22):
        assert connect(iso, "mgmt", host0, port) == (True, f"host0-{port} {MGMT.overlay}")
    # Its rule admits the management slots and the host slots (nft lists the two
    # adjacent ranges merged): without the management slots, refused.
    with without(iso, "host0", HOST_TABLE,
                 ("input", "49152-49216 } ip saddr != { 10.100.0.2-10.100.63.253 }"
                           "=>49152-49216 } ip saddr != { 10.100.0.10-10.100.63.253 }")):
        assert not connect(iso, "mgmt", host0, 16509, REFUSED_TIMEOUT)[0]


def test_tenant_cannot_reach_the_management_servers_agent_port_or_ui(iso: Lab):
    for port in (AGENT_PORT, UI_PORT):
        ok, output = connect(iso, "tenant", MGMT.overlay, port, REFUSED_TIMEOUT)
        assert not ok, f"a tenant reached the management server's {port}: {output}"
    with without(iso, "mgmt", MGMT_TABLE, ("input", "tcp dport 8250 counter"), ("input", "ip saddr != 10.100.0.0/18")):
        assert connect(iso, "tenant", MGMT.overlay, AGENT_PORT) == (True, f"mgmt-agent {TENANT_IP}")


#: An internet address an accomplice holds, and the MAC of a virtual router's public NIC (06
#: set in its first byte: NetUtils.createSequenceBasedMacAddress in apache/cloudstack).
INTERNET_FORGED_SOURCE = "198.18.0.66"
FORGER_MAC = "1e:00:5b:00:00:07"


def syns_seen(lab: Lab, since: int, source: str, timeout: float = 2) -> bool:
    """Whether the management server's UI listener (its raw-socket sniffer, which sees what
    the input hook let through) printed a SYN from `source` after line `since`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(line.startswith(f"syn {source} ") for line in lab.mgmt_ui.lines[since:]):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def forger(iso: Lab):
    """A NIC on host0's cloudbr0 with a CloudStack MAC that sends to the management server's
    overlay address from INTERNET_FORGED_SOURCE, straight over the overlay (not through the router)."""
    plug(iso, "forger", "host0", "10.100.128.2")
    try:
        iso.ip("forger", "link", "set", "eth0", "address", FORGER_MAC)
        iso.ip("forger", "addr", "add", f"{INTERNET_FORGED_SOURCE}/32", "dev", "eth0")
        iso.ip("forger", "route", "replace", f"{MGMT.overlay}/32", "dev", "eth0", "src", INTERNET_FORGED_SOURCE)
        iso.ip("forger", "neigh", "replace", MGMT.overlay, "lladdr", bridge_mac(iso, "mgmt"), "dev", "eth0")
        yield iso
    finally:
        iso.del_ns("forger")


def test_a_source_from_outside_the_overlay_forged_on_cloudbr0_does_not_reach_the_ui(forger: Lab):
    """The router's forward keeps the client's address; only frames from an infrastructure
    node's cloudbr0 (which no VM port may claim) may carry such a source to 8080."""
    seen = len(forger.mgmt_ui.lines)
    connect(forger, "forger", MGMT.overlay, UI_PORT, REFUSED_TIMEOUT)
    assert not syns_seen(forger, seen, INTERNET_FORGED_SOURCE), "a forged internet source reached the UI/API"
    # The router's forward (its Elastic IP, DNAT keeps the client's address) still does.
    assert connect(forger, "inet", ELASTIC_IP, UI_PORT) == (True, f"mgmt-ui {INTERNET_CLIENT}")
    # The proof: without the rule (an address outside the overlay taken for the router's
    # forward, whatever the frame's source MAC) the forged SYN reaches the listener.
    with without(forger, "mgmt", MGMT_TABLE, ("input", "ether saddr & ff:ff:00:00:00:00 != 0a:00:00:00:00:00")):
        seen = len(forger.mgmt_ui.lines)
        connect(forger, "forger", MGMT.overlay, UI_PORT, REFUSED_TIMEOUT)
        assert syns_seen(forger, seen, INTERNET_FORGED_SOURCE)


# --- system VMs: EFS, the agent port, DNS; not the database ---------------------------------


def test_system_vm_reaches_efs_through_the_router(iso: Lab):
    assert connect(iso, "sysvm", EFS.underlay, NFS_PORT) == (True, f"efs {SYSTEM_IP}")
    with without(iso, "router", ROUTER_TABLE, ("from_system", "tcp dport 2049 accept")):
        assert not connect(iso, "sysvm", EFS.underlay, NFS_PORT, REFUSED_TIMEOUT)[0]


def test_system_vm_reaches_the_management_servers_agent_port(iso: Lab):
    assert connect(iso, "sysvm", MGMT.overlay, AGENT_PORT) == (True, f"mgmt-agent {SYSTEM_IP}")
    with without(iso, "mgmt", MGMT_TABLE, ("input", "tcp dport 8250 ip saddr { 10.100.0.10-10.100.63.253, "
                                                    "10.100.64.1-10.100.64.250 } accept")):
        assert not connect(iso, "sysvm", MGMT.overlay, AGENT_PORT, REFUSED_TIMEOUT)[0]


def test_system_vm_resolves_names_and_reaches_the_internet(iso: Lab):
    assert resolves(iso, "sysvm")
    assert connect(iso, "sysvm", INTERNET_CLIENT, INTERNET_PORT) == (True, f"internet {ELASTIC_IP}")


def test_system_vm_cannot_reach_the_database(iso: Lab):
    refused = counter(iso, "system_refused")
    assert not connect(iso, "sysvm", DB_ADDRESS, DB_PORT, REFUSED_TIMEOUT)[0]
    assert counter(iso, "system_refused") > refused
    with without(iso, "router", ROUTER_TABLE, ("from_system", "system_refused")):
        assert connect(iso, "sysvm", DB_ADDRESS, DB_PORT) == (True, f"db {SYSTEM_IP}")


# --- infrastructure, and the way in to the UI ----------------------------------------------


def test_management_server_reaches_the_database(iso: Lab):
    assert connect(iso, "mgmt", DB_ADDRESS, DB_PORT) == (True, f"db {MGMT.overlay}")
    # Its rule: infrastructure may go anywhere; without it the management server
    # is treated as a tenant and the database is out of reach.
    with without(iso, "router", ROUTER_TABLE, ("from_overlay", "ip saddr 10.100.0.0/18 accept")):
        assert not connect(iso, "mgmt", DB_ADDRESS, DB_PORT, REFUSED_TIMEOUT)[0]


def test_the_ui_is_reached_from_the_vpc_and_the_internet_as_before(iso: Lab):
    assert connect(iso, "db", MGMT.overlay, UI_PORT) == (True, f"mgmt-ui {DB_ADDRESS}")
    assert connect(iso, "inet", ELASTIC_IP, UI_PORT) == (True, f"mgmt-ui {INTERNET_CLIENT}")


def test_host_bridges_keep_their_address_while_vms_are_plugged(iso: Lab):
    assert {host: bridge_mac(iso, host) for host in ("host0", "host1")} == BRIDGE_MACS


def test_the_members_tables_are_the_ones_the_boot_scripts_wrote(iso: Lab):
    # Guard against testing a stale or hand-written firewall.
    for host in ("host0", "host1"):
        listing = json.loads(iso.run(host, "nft", "-j", "list", "table", *HOST_TABLE.split()).stdout)
        assert any("rule" in item for item in listing["nftables"])
    assert "tcp dport 8096" in iso.run("mgmt", "nft", "list", "table", *MGMT_TABLE.split()).stdout


# --- IPv6: none on the members' own cloudbr0; bridged IPv6 passes ----------------------------

SSH_PORT = 22
FORGED_SOURCE = "10.99.1.77"  # an unused address of the CloudStack subnet (VPC), not the tenant's


def link_local(lab: Lab, short: str, dev: str = "cloudbr0") -> str:
    """The EUI-64 link-local address the kernel gives `dev` when IPv6 is on
    (addr_gen_mode eui64, the default): fe80:: + the MAC with the U/L bit
    flipped and ff:fe in the middle (RFC 4291 appendix A)."""
    mac = [int(part, 16) for part in lab.run(short, "cat", f"/sys/class/net/{dev}/address").stdout.split(":")]
    mac[0] ^= 0x02
    words = [mac[0] << 8 | mac[1], mac[2] << 8 | 0xFF, 0xFE << 8 | mac[3], mac[4] << 8 | mac[5]]
    return "fe80::" + ":".join(f"{word:x}" for word in words)


def ipv6_addresses(lab: Lab, short: str, dev: str) -> str:
    return lab.ip(short, "-6", "-o", "addr", "show", "dev", dev).stdout.strip()


def wait_ipv6_usable(lab: Lab, short: str, dev: str, timeout: float = 10) -> None:
    """Until `dev` has a link-local address that finished duplicate address detection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = ipv6_addresses(lab, short, dev)
        if "scope link" in listing and "tentative" not in listing:
            return
        time.sleep(0.2)
    raise AssertionError(f"no usable IPv6 link-local address on {short}:{dev}: {ipv6_addresses(lab, short, dev)!r}")


@contextlib.contextmanager
def ipv6_on_bridge(lab: Lab, short: str, inst):
    """The mutation: IPv6 back on `short`'s cloudbr0 (as before the fix); the
    overlay script run again afterwards, which must turn it off again."""
    lab.sysctl(short, "net.ipv6.conf.cloudbr0.disable_ipv6", 0)
    try:
        wait_ipv6_usable(lab, short, "cloudbr0")
        yield
    finally:
        lab.overlay_script(inst)
        assert ipv6_addresses(lab, short, "cloudbr0") == "", "a second run of the overlay script left IPv6 on"


@pytest.fixture(scope="module")
def ipv6(iso: Lab):
    """IPv6 listeners: sshd stand-ins on [::]:22 of the management server and the
    router (sshd listens on both families), and a service of the system VM
    stand-in on [::]:7000 (a VM's IPv6 across two hosts' bridges)."""
    servers = [iso.spawn(short, sys.executable, str(TOOLS), "whoami", f"{short}-ssh6", "::", str(SSH_PORT))
               for short in ("mgmt", "router")]
    servers.append(iso.spawn("sysvm", sys.executable, str(TOOLS), "whoami", "sysvm6", "::", "7000"))
    try:
        for short in ("tenant", "sysvm"):
            wait_ipv6_usable(iso, short, "eth0")
        yield iso
    finally:
        for server in servers:
            iso.stop(server)


@pytest.mark.parametrize("short", ["mgmt", "router", "host0"])
def test_members_have_no_ipv6_on_their_own_bridge(ipv6: Lab, short: str):
    assert ipv6.run(short, "cat", "/proc/sys/net/ipv6/conf/cloudbr0/disable_ipv6").stdout.strip() == "1"
    assert ipv6_addresses(ipv6, short, "cloudbr0") == ""
    # Only cloudbr0: the VXLAN port and the instance's other devices keep the
    # kernel's default (CloudStack's guest bridges are other devices too).
    assert ipv6.run(short, "cat", "/proc/sys/net/ipv6/conf/default/disable_ipv6").stdout.strip() == "0"


@pytest.mark.parametrize("short, inst", [("mgmt", MGMT), ("router", ROUTER)])
def test_tenant_cannot_reach_ssh_over_ipv6_link_local(ipv6: Lab, short: str, inst):
    target = f"{link_local(ipv6, short)}%eth0"
    ok, output = connect(ipv6, "tenant", target, SSH_PORT, REFUSED_TIMEOUT)
    assert not ok, f"a tenant reached {short}'s sshd over IPv6: {output}"
    # The proof: with IPv6 on cloudbr0 (as before), the IPv4-only isolation
    # has a way around it.
    with ipv6_on_bridge(ipv6, short, inst):
        ok, output = connect(ipv6, "tenant", target, SSH_PORT)
        assert ok and output.startswith(f"{short}-ssh6 fe80::"), output


def test_vms_still_speak_ipv6_across_the_hosts_bridges(ipv6: Lab):
    # tenant (on host0's cloudbr0) -> ethovl0 -> VXLAN -> host1's cloudbr0 -> sysvm:
    # bridged frames, untouched by the bridges' own disable_ipv6.
    assert ipv6_addresses(ipv6, "host0", "cloudbr0") == ipv6_addresses(ipv6, "host1", "cloudbr0") == ""
    ok, output = connect(ipv6, "tenant", f"{link_local(ipv6, 'sysvm', 'eth0')}%eth0", 7000)
    assert ok and output.startswith("sysvm6 fe80::"), output


# --- forged sources from the overlay --------------------------------------------------------


def test_router_drops_forged_sources_from_the_overlay(iso: Lab):
    """A tenant sending as a VPC address (UDP: the VPC resolver would answer
    that address, a reflection) is dropped before it is forwarded."""
    iso.ip("tenant", "addr", "add", f"{FORGED_SOURCE}/32", "dev", "eth0")
    try:
        def queries() -> int:
            return sum(1 for line in iso.resolver.lines if line.startswith(f"query {FORGED_SOURCE} "))

        before, refused = queries(), counter(iso, "forged_refused")
        iso.tool("tenant", "resolve", RESOLVER, DNS_NAME, "1", FORGED_SOURCE, check=False, timeout=15)
        assert counter(iso, "forged_refused") > refused
        assert queries() == before, "the forged query reached the VPC resolver"
        with without(iso, "router", ROUTER_TABLE, ("isolation", "forged_refused")):
            iso.tool("tenant", "resolve", RESOLVER, DNS_NAME, "1", FORGED_SOURCE, check=False, timeout=15)
            time.sleep(0.2)
            assert queries() > before, "without the rule the forged query should reach the resolver"
    finally:
        iso.ip("tenant", "addr", "del", f"{FORGED_SOURCE}/32", "dev", "eth0", check=False)


# --- a system VM's two NICs in the one overlay subnet ---------------------------------------
#
# The SSVM and the console proxy have a private NIC (eth1, system range) and a public NIC
# (eth2, public range = the tenant class) in the SAME overlay subnet. setup_common
# (systemvm/debian/opt/cloud/bin/setup/common.sh) brings eth1 up, then eth2, then sets the
# default route via eth2; its "ip route add $MGMTNET via $LOCAL_GW dev eth1" fails here
# (management.network.cidr is the overlay, the connected prefix itself: File exists), and
# setup_system_rfc1918_internal adds no 10/8 route (the public address is RFC 1918). EFS is
# reached by NfsSecondaryStorageResource.addRouteToInternalIpOrCidr: "ip route add <ip> via
# <localgw>" without a device. So which NIC (and which address class) they speak from is
# decided by the ORDER of the two identical connected routes: the kernel appends a NIC's
# connected route (fib_magic, NLM_F_APPEND) and a lookup takes the first.

SSVM_PRIVATE = "10.100.64.2"   # the system range: the private NIC
SSVM_PUBLIC = "10.100.128.2"   # the public range: the public NIC


@contextlib.contextmanager
def system_vm_with_two_nics(lab: Lab, first: str):
    """A two-NIC stand-in on host1's cloudbr0, its NICs' addresses added in the order
    `first` ("eth1" as setup_common does, or "eth2"), routes as the system VM sets them."""
    lab.add_ns("ssvm")
    try:
        for nic, mac in (("eth1", "fe:54:00:00:01:01"), ("eth2", "fe:54:00:00:01:02")):
            port = f"vm-ssvm-{nic}"
            lab.veth("host1", port, "ssvm", nic, OVERLAY_MTU)
            lab.ip("host1", "link", "set", port, "address", mac)
            lab.ip("host1", "link", "set", port, "master", "cloudbr0")
        order = {"eth1": [("eth1", SSVM_PRIVATE), ("eth2", SSVM_PUBLIC)],
                 "eth2": [("eth2", SSVM_PUBLIC), ("eth1", SSVM_PRIVATE)]}[first]
        for nic, address in order:
            lab.ip("ssvm", "addr", "add", f"{address}/{OVERLAY_PREFIX}", "dev", nic)
        mgmtnet = lab.ip("ssvm", "route", "add", OVERLAY_CIDR, "via", ROUTER.overlay, "dev", "eth1", check=False)
        assert mgmtnet.returncode != 0 and "File exists" in mgmtnet.stderr, mgmtnet
        lab.ip("ssvm", "route", "add", "default", "via", ROUTER.overlay, "dev", "eth2")
        lab.ip("ssvm", "route", "add", EFS.underlay, "via", ROUTER.overlay)
        yield
    finally:
        lab.del_ns("ssvm")


def test_system_vm_with_two_nics_speaks_from_its_private_nic_as_setup_common_orders_them(iso: Lab):
    with system_vm_with_two_nics(iso, first="eth1"):
        assert connect(iso, "ssvm", MGMT.overlay, AGENT_PORT) == (True, f"mgmt-agent {SSVM_PRIVATE}")
        assert connect(iso, "ssvm", EFS.underlay, NFS_PORT) == (True, f"efs {SSVM_PRIVATE}")
        # Internet and DNS go by the default route (eth2, the tenant class): allowed to tenants.
        assert connect(iso, "ssvm", INTERNET_CLIENT, INTERNET_PORT) == (True, f"internet {ELASTIC_IP}")
        assert resolves(iso, "ssvm")
        # What breaks it: eth1 reconfigured alone later (its route re-added behind eth2's).
        iso.ip("ssvm", "link", "set", "eth1", "down")
        iso.ip("ssvm", "link", "set", "eth1", "up")
        iso.ip("ssvm", "route", "replace", EFS.underlay, "via", ROUTER.overlay)
        assert not connect(iso, "ssvm", MGMT.overlay, AGENT_PORT, REFUSED_TIMEOUT)[0]
        assert not connect(iso, "ssvm", EFS.underlay, NFS_PORT, REFUSED_TIMEOUT)[0]


def test_system_vm_with_its_public_nic_first_is_refused_efs_and_the_agent_port(iso: Lab):
    with system_vm_with_two_nics(iso, first="eth2"):
        refused = counter(iso, "tenant_refused")
        assert not connect(iso, "ssvm", MGMT.overlay, AGENT_PORT, REFUSED_TIMEOUT)[0]
        assert not connect(iso, "ssvm", EFS.underlay, NFS_PORT, REFUSED_TIMEOUT)[0]
        assert counter(iso, "tenant_refused") > refused, "EFS refused by the router as a tenant's destination"
