"""A tenant behind a KVM host's guest bridge, and a VM port claiming an
infrastructure address, proven with real packets in the namespace lab (netlab.py).

CloudStack's agent puts a guest network's VMs on bridge br<port>-<vlan>
(brethovl0-1000 here) whose uplink is the VLAN device <port>.<vlan>
(ethovl0.1000), made by modifyvlan.sh with no sysctl of its own: the bridge gets
the kernel's defaults of the moment it is created (IPv6 on, accept_ra as
net.ipv6.conf.default says). This kernel has no 8021q module, so the uplink is a
stand-in: a veth named ethovl0.1000 whose other end is the guest network's
gateway (its virtual router's guest NIC, "gvr" 10.1.1.1). The tenant ("gtenant",
10.1.1.10) is a VM port of the same bridge on host0.

Every test runs in three modes (the module fixture's parameter):
  hardened       host0 as its boot scripts leave it: the overlay script's
                 sysctls and the firewall the real kvm-host.sh writes (run
                 against the boot fakes of tests/userdata);
  firewall-only  that firewall, but the kernel's defaults for the sysctls the
                 overlay script sets (accept_ra 1, arp_ignore 0, arp_announce 0,
                 rp_filter 0, as on a distribution that sets none of them): the
                 firewall holds on its own;
  unhardened     the control: the kernel's defaults and the firewall without
                 its IPv6, not-local, VXLAN and VM-port rules.
The tenant's way to its gateway works in every mode; every attack (IPv6 or IPv4
to the host, frames injected through the host's VXLAN socket, a Router
Advertisement, a gratuitous ARP or a MAC or source address of the
infrastructure from a VM on cloudbr0) fails in the first two and succeeds
unhardened (ARP answers, which only the sysctls stop, come back with the
firewall alone), so each test proves its rules are the reason.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .netlab import MGMT, ROUTER, TOOLS, VXLAN_ID, WHOAMI_PORT, Lab
from .test_isolation_lab import REFUSED_TIMEOUT, boot_firewall, connect, link_local, plug, wait_ipv6_usable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "userdata"))
import bootlab  # noqa: E402  (the boot-script harness: runs the real user data against fakes)

pytestmark = pytest.mark.lab

HOST = "host0"
GUEST_BRIDGE = "brethovl0-1000"
UPLINK = "ethovl0.1000"
TENANT, GATEWAY = "gtenant", "gvr"
TENANT_IP, GATEWAY_IP = "10.1.1.10", "10.1.1.1"
RPCBIND_PORT = 111          # what the host's rpcbind listens on, both families
UDP_PORT = 33333            # a UDP service of the host
VXLAN_PORT = 4789           # the overlay script's default (overlay.env of the lab's members)
ATTACKER, ATTACKER_IP = "atk", "10.100.128.66"  # a VM NIC on host0's cloudbr0 (e.g. a tenant's router's public NIC)
FORGED_INFRA_SOURCE = "10.100.0.99"  # an unused infrastructure slot
RA_PREFIX = "2001:db8:66::"
HOST_TABLE = "inet cloudstack_ec2_host"
VM_PORT_TABLE = "bridge cloudstack_ec2_vm_ports"
#: The kernel's defaults the hardening changes (ip-sysctl.rst): the unhardened control.
KERNEL_DEFAULTS = {
    "net.ipv6.conf.all.accept_ra": 1, "net.ipv6.conf.default.accept_ra": 1,
    **{f"net.ipv4.conf.{dev}.{key}": 0 for dev in ("all", "default")
       for key in ("arp_ignore", "arp_announce", "rp_filter")},
}
HARDENING_COUNTERS = ("ipv6_refused", "not_local_refused", "vxlan_refused")


@dataclass(frozen=True)
class Mode:
    name: str
    sysctls: bool   # the overlay script's (True) or the kernel's defaults
    firewall: bool  # the boot script's rules whole (True) or without the hardening


MODES = [Mode("hardened", True, True), Mode("firewall-only", False, True), Mode("unhardened", False, False)]


def unhardened(rules: str) -> str:
    """The boot script's rules without the hardening: no IPv6, not-local or VXLAN
    rule in the host's table, and no VM-port table."""
    host_table = rules.split("table bridge cloudstack_ec2_vm_ports")[0].splitlines()
    kept = [line for line in host_table if not any(f'name "{name}"' in line for name in HARDENING_COUNTERS)]
    assert len(kept) == len(host_table) - len(HARDENING_COUNTERS), "one rule line per hardening counter"
    return "\n".join(kept) + "\n"


def vm_mac(lab: Lab, short: str, mac: str) -> None:
    """A VM's MAC as CloudStack gives it (02:00:...): never an infrastructure node's
    by chance, as a veth's random one could be. Set while down, so that the
    link-local address follows it."""
    lab.ip(short, "link", "set", "eth0", "down")
    lab.ip(short, "link", "set", "eth0", "address", mac)
    lab.ip(short, "link", "set", "eth0", "up")


def guest_bridge(lab: Lab) -> None:
    """As modifyvlan.sh: a bridge with the uplink as its port, both up; then the tenant's NIC."""
    lab.ip(HOST, "link", "add", "name", GUEST_BRIDGE, "type", "bridge")
    lab.ip(HOST, "link", "set", GUEST_BRIDGE, "up")
    for short, port, address, mac in ((GATEWAY, UPLINK, GATEWAY_IP, "02:00:00:00:10:01"),
                                      (TENANT, "vnet-g0", TENANT_IP, "02:00:00:00:10:0a")):
        lab.add_ns(short)
        lab.veth(HOST, port, short, "eth0", 1500)
        vm_mac(lab, short, mac)
        lab.ip(HOST, "link", "set", port, "master", GUEST_BRIDGE)
        lab.ip(short, "addr", "add", f"{address}/24", "dev", "eth0")
    lab.ip(TENANT, "route", "add", "default", "via", GATEWAY_IP)
    for short, dev in ((HOST, GUEST_BRIDGE), (TENANT, "eth0"), (GATEWAY, "eth0")):
        wait_ipv6_usable(lab, short, dev)


@pytest.fixture(scope="module", params=MODES, ids=[mode.name for mode in MODES])
def guest(request, lab: Lab, tmp_path_factory):
    """host0 in the mode's state, its guest bridge, the tenant, its gateway, an
    attacker VM on cloudbr0 and the listeners; all undone afterwards."""
    mode: Mode = request.param
    rules = boot_firewall(tmp_path_factory.mktemp("kvm"), bootlab.KVM_HOST)
    host = lab.instances[HOST]
    servers = []
    try:
        lab.overlay_script(host)
        if not mode.sysctls:
            for key, value in KERNEL_DEFAULTS.items():
                lab.sysctl(HOST, key, value)
        lab.run(HOST, "nft", "-f", "-", input=rules if mode.firewall else unhardened(rules))
        guest_bridge(lab)  # after the sysctls: it inherits "default" as modifyvlan.sh's does
        plug(lab, ATTACKER, HOST, ATTACKER_IP)
        vm_mac(lab, ATTACKER, "02:00:00:00:10:66")
        lab.ip(ATTACKER, "route", "replace", "default", "via", ROUTER.overlay)
        servers.append(lab.spawn(HOST, sys.executable, str(TOOLS), "whoami", "rpcbind", "::", str(RPCBIND_PORT)))
        servers.append(lab.spawn(HOST, sys.executable, str(TOOLS), "udp", "0.0.0.0", str(UDP_PORT)))
        servers.append(lab.spawn(GATEWAY, sys.executable, str(TOOLS), "whoami", "gateway", "::", str(WHOAMI_PORT)))
        lab.mode = mode
        yield lab
    finally:
        undo_guest(lab, servers, ATTACKER)
        lab.overlay_script(host)  # the hardened sysctls again, as the other lab modules expect
        for short, inst in lab.instances.items():
            if inst.role:
                lab.ip(short, "neigh", "flush", "to", MGMT.overlay, check=False)
        # The bridges and VTEPs learn the management server's MAC where it is again.
        lab.run("mgmt", "ping", "-c1", "-W1", ROUTER.overlay, check=False)


def undo_guest(lab: Lab, servers: list, *others: str) -> None:
    """Stops `servers`; removes the tenant, its gateway and the namespaces `others`, the
    guest bridge and host0's tables."""
    for server in servers:
        lab.stop(server)
    for short in (TENANT, GATEWAY, *others):
        lab.del_ns(short)
    lab.ip(HOST, "link", "del", GUEST_BRIDGE, check=False)
    for table in (HOST_TABLE, VM_PORT_TABLE):
        lab.run(HOST, "nft", "delete", "table", *table.split(), check=False)


def udp_sources(lab: Lab, short: str = HOST) -> list[str]:
    """Sources of the datagrams the UDP listener of `short` received so far."""
    server = next(p for p in lab.processes
                  if p.popen.args[3] == lab.ns(short) and p.popen.args[-3:] == ["udp", "0.0.0.0", str(UDP_PORT)])
    return [line.split()[1] for line in server.lines if line.startswith("udp ")]


def received_from(lab: Lab, source: str, send, short: str = HOST) -> int:
    """How many datagrams from `source` the listener of `short` got while `send()` ran."""
    before = udp_sources(lab, short).count(source)
    send()
    time.sleep(0.3)
    return udp_sources(lab, short).count(source) - before


def mac_of(lab: Lab, short: str, dev: str) -> str:
    return lab.run(short, "cat", f"/sys/class/net/{dev}/address").stdout.strip()


def bridge_link_local(lab: Lab) -> str:
    """host0's link-local address on the guest bridge (as the kernel made it)."""
    listing = lab.ip(HOST, "-6", "-o", "addr", "show", "dev", GUEST_BRIDGE, "scope", "link").stdout
    match = re.search(r"inet6 (fe80::[0-9a-f:]+)/64", listing)
    assert match, listing
    return match.group(1)


def on_link(lab: Lab, address: str) -> None:
    """The tenant sends to `address` straight on its own link (no gateway), a static
    neighbour entry standing in for ARP: frames reach host0's guest bridge whatever
    the host answers to ARP."""
    lab.ip(TENANT, "route", "replace", f"{address}/32", "dev", "eth0")
    lab.ip(TENANT, "neigh", "replace", address, "lladdr", mac_of(lab, HOST, GUEST_BRIDGE), "dev", "eth0")


def counter(lab: Lab, name: str, table: str = HOST_TABLE) -> int:
    return lab.counter(name, HOST, table)


def packets_sent(lab: Lab, short: str, send, dev: str = "eth0") -> int:
    """How many packets `short`'s `dev` transmitted while `send()` ran: an attack test
    must show its packet left, or it passes when the sending breaks."""
    def tx() -> int:
        link = json.loads(lab.ip(short, "-s", "-j", "link", "show", "dev", dev).stdout)[0]
        return link["stats64"]["tx"]["packets"]
    before = tx()
    send()
    return tx() - before


# --- the tenant's own network works, with or without br_netfilter --------------------------


@pytest.mark.parametrize("br_netfilter", [0, 1], ids=["bridge-nf-off", "bridge-nf-on"])
def test_tenant_reaches_its_gateway_over_ipv4_and_ipv6(guest: Lab, br_netfilter: int):
    # With br_netfilter (bridge-nf-call-*: zones with security groups need it, as
    # CloudStack's security_group.py filters VM traffic with iptables physdev rules),
    # bridged IPv4/IPv6 pass the inet forward hook, which the host's table does not
    # use; without it they pass no inet hook. This kernel has it built in.
    for family in ("iptables", "ip6tables"):
        guest.sysctl(HOST, f"net.bridge.bridge-nf-call-{family}", br_netfilter)
    try:
        assert connect(guest, TENANT, GATEWAY_IP, WHOAMI_PORT) == (True, f"gateway ::ffff:{TENANT_IP}")
        ok, output = connect(guest, TENANT, f"{link_local(guest, GATEWAY, 'eth0')}%eth0", WHOAMI_PORT)
        assert ok and output.startswith("gateway fe80::"), output
    finally:
        for family in ("iptables", "ip6tables"):
            guest.sysctl(HOST, f"net.bridge.bridge-nf-call-{family}", 1)


def test_host_still_speaks_over_the_overlay(guest: Lab):
    # The VXLAN rule passes the overlay's own datagrams (to the group and the underlay address).
    refused = counter(guest, "vxlan_refused") if guest.mode.firewall else 0
    host = guest.instances[HOST]
    for peer in ("router", "mgmt", "host1"):
        guest.ip(peer, "neigh", "flush", "to", host.overlay, check=False)  # ARP again: multicast, then unicast
        assert guest.run(peer, "ping", "-c2", "-i0.2", "-W1", host.overlay, check=False).returncode == 0, peer
    if guest.mode.firewall:
        assert counter(guest, "vxlan_refused") == refused


def test_overlay_script_sets_the_sysctls_whatever_the_distribution_set(guest: Lab):
    # From the kernel's defaults (a distribution that sets none), with the guest
    # bridge already there (the script run again on a running host).
    bridge_ra = f"net.ipv6.conf.{GUEST_BRIDGE}.accept_ra"
    keys = [*KERNEL_DEFAULTS, bridge_ra]
    saved = {key: guest.run(HOST, "sysctl", "-n", key).stdout.strip() for key in keys}
    try:
        for key, value in {**KERNEL_DEFAULTS, bridge_ra: 1}.items():
            guest.sysctl(HOST, key, value)
        guest.overlay_script(guest.instances[HOST])
        after = {key: guest.run(HOST, "sysctl", "-n", key).stdout.strip() for key in keys}
        wanted = {"accept_ra": "0", "arp_ignore": "1", "arp_announce": "2", "rp_filter": "2"}
        assert after == {key: wanted[key.rsplit(".", 1)[1]] for key in keys}
    finally:
        for key, value in saved.items():
            guest.sysctl(HOST, key, value)


# --- no host service over IPv6 or IPv4 ------------------------------------------------------


def test_tenant_finds_and_reaches_no_host_service_over_ipv6(guest: Lab):
    host_ll = bridge_link_local(guest)
    refused = counter(guest, "ipv6_refused") if guest.mode.firewall else 0
    ping = guest.run(TENANT, "ping", "-6", "-c2", "-i0.3", "-W1", "ff02::1%eth0", check=False)
    ok, output = connect(guest, TENANT, f"{host_ll}%eth0", RPCBIND_PORT, REFUSED_TIMEOUT)
    if guest.mode.firewall:
        assert host_ll not in ping.stdout, ping.stdout
        assert not ok, f"a tenant reached the host's rpcbind over IPv6: {output}"
        assert counter(guest, "ipv6_refused") > refused
    else:
        assert host_ll in ping.stdout, ping.stdout
        assert ok and output.startswith("rpcbind fe80::"), output


@pytest.mark.parametrize("which", ["overlay", "underlay"])
def test_tenant_reaches_no_host_address_over_ipv4(guest: Lab, which: str):
    address = getattr(guest.instances[HOST], which)
    on_link(guest, address)
    refused = counter(guest, "not_local_refused") if guest.mode.firewall else 0
    got = []
    sent = packets_sent(guest, TENANT, lambda: got.append(
        received_from(guest, TENANT_IP, lambda: guest.tool(TENANT, "send-udp", address, str(UDP_PORT)))))
    got = got[0]
    assert sent >= 1, "the tenant's datagram never left"
    if guest.mode.sysctls or guest.mode.firewall:
        assert got == 0, f"a tenant's datagram reached a host service at its {which} address"
    else:
        assert got == 1
    if guest.mode == MODES[1]:  # firewall-only: its rule is what refused it
        assert counter(guest, "not_local_refused") > refused


def test_host_answers_no_arp_for_its_addresses_on_the_guest_bridge(guest: Lab):
    host = guest.instances[HOST]
    guest.ip(TENANT, "route", "replace", f"{host.underlay}/32", "dev", "eth0")
    guest.ip(TENANT, "neigh", "del", host.underlay, "dev", "eth0", check=False)
    # The echo's answer would leave by the host's default route, not here: only ARP counts.
    sent = packets_sent(guest, TENANT, lambda: guest.run(TENANT, "ping", "-c1", "-W1", host.underlay, check=False))
    assert sent >= 1, "the tenant's ARP request never left"
    neighbour = guest.ip(TENANT, "neigh", "show", host.underlay, "dev", "eth0").stdout
    answered = f"lladdr {mac_of(guest, HOST, GUEST_BRIDGE)}" in neighbour
    assert answered is not guest.mode.sysctls, neighbour


def inject(lab: Lab, client: str, address: str, outer_source: str = "0.0.0.0") -> int:
    """One VXLAN datagram from `client` to `address`, carrying a frame onto host0's
    cloudbr0 from a forged infrastructure address to host0's UDP service; how
    many such packets the service got."""
    host = lab.instances[HOST]
    return received_from(lab, FORGED_INFRA_SOURCE, lambda: lab.tool(
        client, "vxlan", address, str(VXLAN_PORT), str(VXLAN_ID), mac_of(lab, HOST, "cloudbr0"),
        FORGED_INFRA_SOURCE, host.overlay, str(UDP_PORT), outer_source))


def test_tenant_cannot_inject_frames_through_the_hosts_vxlan_socket(guest: Lab):
    # From the guest bridge to the host's underlay address.
    underlay = guest.instances[HOST].underlay
    on_link(guest, underlay)
    injected = []
    sent = packets_sent(guest, TENANT, lambda: injected.append(inject(guest, TENANT, underlay)))
    assert sent >= 1, "the tenant's VXLAN datagram never left"
    assert injected[0] == (0 if guest.mode.sysctls or guest.mode.firewall else 1)


def test_vm_on_cloudbr0_cannot_inject_frames_through_the_hosts_vxlan_socket(guest: Lab):
    # From a VM on cloudbr0 to the host's overlay address, from a system VM's address
    # (the host admits the system range; tenants it refuses whatever the port).
    system_vm = "10.100.64.77"
    guest.ip(ATTACKER, "addr", "add", f"{system_vm}/32", "dev", "eth0")
    try:
        refused = counter(guest, "vxlan_refused") if guest.mode.firewall else 0
        injected = inject(guest, ATTACKER, guest.instances[HOST].overlay, system_vm)
    finally:
        guest.ip(ATTACKER, "addr", "del", f"{system_vm}/32", "dev", "eth0", check=False)
    if guest.mode.firewall:
        assert injected == 0
        assert counter(guest, "vxlan_refused") > refused
    else:
        assert injected == 1


def test_tenant_router_advertisement_changes_no_host_route(guest: Lab):
    refused = counter(guest, "ipv6_refused") if guest.mode.firewall else 0
    sent = packets_sent(guest, TENANT, lambda: guest.tool(TENANT, "ra", "eth0", RA_PREFIX))
    assert sent >= 1, "the tenant's Router Advertisement never left"
    time.sleep(1)
    if guest.mode.firewall:  # it reached the host, whose IPv6 rule dropped it
        assert counter(guest, "ipv6_refused") > refused
    routes = guest.ip(HOST, "-6", "route", "show", "default").stdout
    addresses = guest.ip(HOST, "-6", "addr", "show", "dev", GUEST_BRIDGE, "scope", "global").stdout
    accept_ra = guest.run(HOST, "cat", f"/proc/sys/net/ipv6/conf/{GUEST_BRIDGE}/accept_ra").stdout.strip()
    assert accept_ra == ("0" if guest.mode.sysctls else "1")
    if guest.mode.sysctls or guest.mode.firewall:
        assert routes.strip() == "" and RA_PREFIX not in addresses, (routes, addresses)
    else:
        assert re.search(rf"default via fe80::\S+ dev {GUEST_BRIDGE} proto ra", routes), routes
        assert RA_PREFIX.rstrip(":") in addresses, addresses


# --- infrastructure addresses stay with their nodes ----------------------------------------


def test_gratuitous_arp_from_a_vm_port_does_not_redirect_the_management_servers_traffic(guest: Lab):
    mgmt_mac, attacker_mac = mac_of(guest, "mgmt", "cloudbr0"), mac_of(guest, ATTACKER, "eth0")
    assert connect(guest, "router", MGMT.overlay, WHOAMI_PORT) == (True, f"mgmt {ROUTER.overlay}")
    time.sleep(1.2)  # past the neighbour table's locktime (1 s), after which an ARP may override an entry
    refused = counter(guest, "infra_claim_refused", VM_PORT_TABLE) if guest.mode.firewall else 0
    for _ in range(3):
        guest.tool(ATTACKER, "garp", "eth0", MGMT.overlay)
        time.sleep(0.1)
    entry = guest.ip("router", "neigh", "show", MGMT.overlay, "dev", "cloudbr0").stdout
    ok, output = connect(guest, "router", MGMT.overlay, WHOAMI_PORT, REFUSED_TIMEOUT)
    if guest.mode.firewall:
        assert f"lladdr {mgmt_mac}" in entry, entry
        assert (ok, output) == (True, f"mgmt {ROUTER.overlay}")
        assert counter(guest, "infra_claim_refused", VM_PORT_TABLE) >= refused + 3
    else:
        assert f"lladdr {attacker_mac}" in entry, entry
        assert not ok, f"the router's connection should have gone to the attacker: {output}"


def test_vm_port_cannot_send_from_an_infrastructure_address(guest: Lab):
    # The IPv4 half: a datagram "from" the management server to a service of another host.
    target = guest.instances["host1"]
    server = guest.spawn(target.name, sys.executable, str(TOOLS), "udp", "0.0.0.0", str(UDP_PORT))
    guest.ip(ATTACKER, "addr", "add", f"{MGMT.overlay}/32", "dev", "eth0")
    # ARP as the attacker's own address (a forged ARP sender is the other test's).
    guest.ip(ATTACKER, "neigh", "replace", target.overlay, "lladdr", mac_of(guest, target.name, "cloudbr0"),
             "dev", "eth0")
    refused = counter(guest, "infra_claim_refused", VM_PORT_TABLE) if guest.mode.firewall else 0
    got = []
    try:
        sent = packets_sent(guest, ATTACKER, lambda: got.append(received_from(guest, MGMT.overlay, lambda: guest.tool(
            ATTACKER, "send-udp", target.overlay, str(UDP_PORT), MGMT.overlay), target.name)))
    finally:
        guest.ip(ATTACKER, "addr", "del", f"{MGMT.overlay}/32", "dev", "eth0", check=False)
        guest.stop(server)
    assert sent >= 1, "the forged datagram never left"
    assert got[0] == (0 if guest.mode.firewall else 1)
    if guest.mode.firewall:  # the VM-port rule dropped it
        assert counter(guest, "infra_claim_refused", VM_PORT_TABLE) > refused


def test_frames_from_a_vm_port_cannot_carry_an_infrastructure_nodes_mac(guest: Lab):
    # The layer-2 half: an ARP for the attacker's own address, sent from the management
    # server's MAC, teaches host0's bridge and the router's VTEP that this MAC is behind
    # the attacker's port; the router's frames for the management server follow it.
    mgmt_mac = mac_of(guest, "mgmt", "cloudbr0")
    assert mgmt_mac.startswith("0a:00:"), "the overlay script derives an infrastructure node's MAC"
    guest.ip("router", "neigh", "flush", "to", MGMT.overlay)
    assert connect(guest, "router", MGMT.overlay, WHOAMI_PORT) == (True, f"mgmt {ROUTER.overlay}")
    refused = counter(guest, "infra_claim_refused", VM_PORT_TABLE) if guest.mode.firewall else 0
    guest.tool(ATTACKER, "garp", "eth0", ATTACKER_IP, mgmt_mac)
    ok, output = connect(guest, "router", MGMT.overlay, WHOAMI_PORT, REFUSED_TIMEOUT)
    if guest.mode.firewall:
        assert (ok, output) == (True, f"mgmt {ROUTER.overlay}")
        assert counter(guest, "infra_claim_refused", VM_PORT_TABLE) > refused
    else:
        assert not ok, f"the router's frames for the management server should have gone to the attacker: {output}"
