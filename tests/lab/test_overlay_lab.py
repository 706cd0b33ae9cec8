"""The overlay, proven with real packets in the namespace lab (see netlab.py)."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import time

import pytest

from .netlab import (
    DB_ADDRESS, DB_PORT, DNS_NAME, ELASTIC_IP, FAR_HOST, IMDS, INTERNET_CLIENT, INTERNET_MTU, INTERNET_PORT,
    INTERNET_VPCR, MGMT, OVERLAY_MTU, PING_LOSS, RESOLVER, ROUTER, TOOLS, TROUBLEMAKER, UI_PORT, UNDERLAY_MTU,
    VXLAN_GROUP, WHOAMI_PORT, Lab, Process, host_instance,
)

pytestmark = pytest.mark.lab

MEMBERS = ("mgmt", "host0", "host1")
ICMP_IP_OVERHEAD = 28  # IPv4 header + ICMP header: ping -s N sends an N + 28 byte packet
TCPIP_HEADERS = 40  # IPv4 + TCP headers: a link's MSS is its MTU - 40
INTERNET_MSS = INTERNET_MTU - TCPIP_HEADERS  # 1460: what the router clamps to
BULK_BYTES = 64 * 1024 + 1  # more than 64 KiB each way: many full-size segments


def greeting(lab: Lab, client: str, address: str, port: int, timeout: float = 3) -> str:
    result = lab.tool(client, "tcp", address, str(port), str(timeout), check=False, timeout=timeout + 10)
    assert result.returncode == 0, f"{client} -> {address}:{port} failed: {result.stderr}"
    return result.stdout.strip()


def ping(lab: Lab, client: str, address: str, *extra: str, count: int = 2) -> subprocess.CompletedProcess:
    return lab.run(client, "ping", "-n", "-i", "0.2", "-c", str(count), "-W", "2", *extra, address, check=False,
                   timeout=20)


def test_members_join_the_multicast_group_with_igmpv2(lab: Lab):
    mdb = lab.run("sub", "bridge", "mdb", "show").stdout
    joined = set(re.findall(rf"port (\S+) grp {re.escape(VXLAN_GROUP)}\b", mdb))
    assert joined == {"p-router", "p-mgmt", "p-host0", "p-host1"}, mdb
    for name in ("router", *MEMBERS):
        forced = lab.run(name, "cat", "/proc/sys/net/ipv4/conf/ens5/force_igmp_version").stdout.strip()
        assert forced == "2", f"{name}: force_igmp_version={forced}"
        igmp = lab.run(name, "cat", "/proc/net/igmp").stdout
        assert re.search(r"^\d+\s+ens5\s*:\s*\d+\s+V2\b", igmp, re.M), f"{name} underlay not IGMPv2:\n{igmp}"


@pytest.mark.parametrize("client,server", list(itertools.permutations(MEMBERS, 2)))
def test_overlay_members_reach_each_other(lab: Lab, client: str, server: str):
    target = lab.instances[server]
    result = ping(lab, client, target.overlay)
    assert result.returncode == 0, result.stdout + result.stderr
    # The server sees the client's overlay address: the packets crossed the overlay.
    assert greeting(lab, client, target.overlay, WHOAMI_PORT) == f"{server} {lab.instances[client].overlay}"


def test_client_on_second_subnet_reaches_management_ui_through_router(lab: Lab):
    # No NAT inside the VPC: the management server sees the client's own address,
    # and its reply finds the way back through the router.
    assert greeting(lab, "db", MGMT.overlay, UI_PORT) == f"mgmt-ui {DB_ADDRESS}"


def test_management_server_reaches_its_database_on_second_subnet(lab: Lab):
    # The database sees the management server's overlay address (the DB security
    # group admits 3306 from that /32) and its reply returns through the router.
    assert greeting(lab, "mgmt", DB_ADDRESS, DB_PORT) == f"db {MGMT.overlay}"


# The TroubleMaker tries the UI/API port: the one service the router lets the VPC
# reach at an overlay address (tenant isolation); any other port it refuses itself.
def test_troublemaker_on_the_subnet_cannot_reach_an_overlay_address(lab: Lab):
    dropped_before = lab.counter("p_mgmt_out")
    result = lab.tool("tm", "tcp", MGMT.overlay, str(UI_PORT), "2", check=False, timeout=15)
    assert result.returncode != 0, f"the TroubleMaker connected: {result.stdout}"
    # Why: the request came through the router, the reply went straight back over
    # the subnet with the overlay source, and the source/destination check dropped it.
    assert lab.counter("p_mgmt_out") > dropped_before


def test_troublemaker_connects_when_the_source_destination_check_is_off(lab: Lab):
    lab.set_srcdst_check("mgmt", enabled=False)
    try:
        assert greeting(lab, "tm", MGMT.overlay, UI_PORT) == f"mgmt-ui {TROUBLEMAKER.underlay}"
    finally:
        lab.set_srcdst_check("mgmt", enabled=True)
    result = lab.tool("tm", "tcp", MGMT.overlay, str(UI_PORT), "2", check=False, timeout=15)
    assert result.returncode != 0, "the check is back on, the TroubleMaker must fail again"


@pytest.mark.parametrize("member", MEMBERS)
def test_overlay_members_reach_the_internet_through_router_nat(lab: Lab, member: str):
    # The internet sees the router's Elastic IP: the router source-NATs the
    # overlay to its underlay address, which the internet gateway maps.
    assert greeting(lab, member, INTERNET_CLIENT, INTERNET_PORT) == f"internet {ELASTIC_IP}"


def test_internet_client_reaches_management_ui_through_router_dnat(lab: Lab):
    assert greeting(lab, "inet", ELASTIC_IP, UI_PORT) == f"mgmt-ui {INTERNET_CLIENT}"


def test_vpc_client_reaches_management_ui_on_router_underlay_address(lab: Lab):
    assert greeting(lab, "db", ROUTER.underlay, UI_PORT) == f"mgmt-ui {DB_ADDRESS}"


def test_overlay_member_resolves_names_through_router(lab: Lab):
    seen = len(lab.resolver.lines)
    result = lab.tool("host0", "resolve", RESOLVER, DNS_NAME, "3", check=False, timeout=15)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == DB_ADDRESS
    # The resolver saw the router's underlay address (a VPC source), not the overlay one.
    assert f"query {ROUTER.underlay} {DNS_NAME}" in lab.resolver.lines[seen:]


def test_emulated_vpc_resolver_ignores_non_vpc_sources(lab: Lab):
    # The control for the test above: without the router's source NAT, a query
    # from outside the VPC gets no answer.
    result = lab.tool("vpcr", "resolve", RESOLVER, DNS_NAME, "1", INTERNET_VPCR, check=False, timeout=15)
    assert result.returncode != 0 and "no answer" in result.stderr
    assert f"query {INTERNET_VPCR} {DNS_NAME}" in lab.resolver.lines


@pytest.mark.parametrize("member", MEMBERS)
def test_link_local_services_answer_the_member_itself(lab: Lab, member: str):
    # IMDS sees the member's own underlay address: it would answer with this
    # instance's credentials, not the router's.
    assert greeting(lab, member, IMDS, 80) == f"imds {lab.instances[member].underlay}"


def test_routes_members_through_overlay_and_router_through_underlay(lab: Lab):
    for member in MEMBERS:
        route = lab.ip(member, "route", "get", "192.0.2.1").stdout
        assert f"via {ROUTER.overlay} dev cloudbr0 src {lab.instances[member].overlay}" in route, route
        local = lab.ip(member, "route", "get", TROUBLEMAKER.underlay).stdout
        assert "dev ens5" in local and "via" not in local, local
    route = lab.ip("router", "route", "get", "192.0.2.1").stdout
    assert "dev ens5" in route, route
    assert lab.run("router", "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"


def wait_reachable(lab: Lab, client: str, address: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping(lab, client, address, count=1).returncode == 0:
            return
    pytest.fail(f"{address} not reachable from {client} within {timeout}s")


def test_host_added_later_joins_without_touching_the_others(lab: Lab):
    others = ("router", *MEMBERS)
    before = {name: lab.state(name) for name in others}
    joining = host_instance(5)
    lab.add_instance(joining)
    try:
        wait_reachable(lab, joining.name, MGMT.overlay)
        for name in others:
            peer = lab.instances[name]
            assert greeting(lab, joining.name, peer.overlay, WHOAMI_PORT) == f"{name} {joining.overlay}"
            assert greeting(lab, name, joining.overlay, WHOAMI_PORT) == f"{joining.name} {peer.overlay}"
        assert greeting(lab, joining.name, INTERNET_CLIENT, INTERNET_PORT) == f"internet {ELASTIC_IP}"
        assert {name: lab.state(name) for name in others} == before
    finally:
        lab.remove_instance(joining.name)


def test_the_rest_keeps_working_after_a_host_is_removed(lab: Lab):
    leaving = host_instance(6)
    lab.add_instance(leaving)
    try:
        wait_reachable(lab, "host0", leaving.overlay)
        assert greeting(lab, "mgmt", leaving.overlay, WHOAMI_PORT) == f"{leaving.name} {MGMT.overlay}"
    finally:
        lab.remove_instance(leaving.name)
    assert ping(lab, "mgmt", leaving.overlay, count=1).returncode != 0, "the removed host still answers"
    for client, server in itertools.permutations(MEMBERS, 2):
        target = lab.instances[server]
        assert greeting(lab, client, target.overlay, WHOAMI_PORT) == f"{server} {lab.instances[client].overlay}"
    assert greeting(lab, "db", MGMT.overlay, UI_PORT) == f"mgmt-ui {DB_ADDRESS}"


def test_rerun_changes_nothing_and_traffic_keeps_flowing(lab: Lab):
    rerun = ("router", "mgmt", "host0")
    before = {name: lab.state(name) for name in rerun}
    ns = lab.ns
    background = {
        # Through the router (forwarding + DNAT + the IGW's NAT) and member to member.
        "db ping mgmt": ["ip", "netns", "exec", ns("db"), "ping", "-n", "-q", "-i", "0.02", "-c", "150", "-W", "1",
                         MGMT.overlay],
        "host1 ping host0": ["ip", "netns", "exec", ns("host1"), "ping", "-n", "-q", "-i", "0.02", "-c", "150",
                             "-W", "1", lab.instances["host0"].overlay],
        "internet holds UI": ["ip", "netns", "exec", ns("inet"), sys.executable, str(TOOLS), "hold", ELASTIC_IP,
                              str(UI_PORT), "3"],
        "host1 holds mgmt": ["ip", "netns", "exec", ns("host1"), sys.executable, str(TOOLS), "hold", MGMT.overlay,
                             str(WHOAMI_PORT), "3"],
    }
    procs = {k: subprocess.Popen(v, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for k, v in background.items()}
    try:
        time.sleep(0.5)
        for name in rerun:
            result = lab.overlay_script(lab.instances[name])
            assert "creating" not in result.stdout and "replacing" not in result.stdout, result.stdout
        outputs = {k: p.communicate(timeout=20)[0] for k, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(5)
    for key, proc in procs.items():
        assert proc.returncode == 0, f"{key}: {outputs[key]}"
        counts = PING_LOSS.search(outputs[key])
        if counts:
            assert counts.group(1) == counts.group(2) == "150", f"{key} lost packets: {outputs[key]}"
    assert {name: lab.state(name) for name in rerun} == before


def test_overlay_mtu_packet_with_df_crosses_and_one_byte_more_does_not(lab: Lab):
    host0 = lab.instances["host0"].overlay
    exact = ping(lab, "mgmt", host0, "-M", "do", "-s", str(OVERLAY_MTU - ICMP_IP_OVERHEAD))
    assert exact.returncode == 0, exact.stdout + exact.stderr
    assert f"{OVERLAY_MTU - ICMP_IP_OVERHEAD + 8} bytes from {host0}" in exact.stdout
    bigger = ping(lab, "mgmt", host0, "-M", "do", "-s", str(OVERLAY_MTU - ICMP_IP_OVERHEAD + 1))
    assert bigger.returncode != 0
    assert f"mtu={OVERLAY_MTU}" in bigger.stdout + bigger.stderr, bigger.stdout + bigger.stderr


def test_router_reports_the_overlay_mtu_to_vpc_senders(lab: Lab):
    # From the second subnet (MTU 9001) through the router onto the overlay.
    exact = ping(lab, "db", MGMT.overlay, "-M", "do", "-s", str(OVERLAY_MTU - ICMP_IP_OVERHEAD))
    assert exact.returncode == 0, exact.stdout + exact.stderr
    bigger = ping(lab, "db", MGMT.overlay, "-M", "do", "-s", str(OVERLAY_MTU - ICMP_IP_OVERHEAD + 1))
    assert bigger.returncode != 0
    assert f"Frag needed and DF set (mtu = {OVERLAY_MTU})" in bigger.stdout, bigger.stdout


def test_full_size_flooded_frame_fits_the_transit_gateway(lab: Lab):
    # Unknown-unicast frames are flooded to the multicast group, i.e. through the
    # Transit Gateway (8500 bytes at most): forget where host0's VTEP is, then
    # send a full-size frame to it.
    host0 = lab.instances["host0"]
    wait_reachable(lab, "mgmt", host0.overlay)
    mac = lab.run("host0", "cat", "/sys/class/net/cloudbr0/address").stdout.strip()
    lab.run("mgmt", "bridge", "fdb", "del", mac, "dev", "ethovl0", "self")
    flooded_before = lab.counter("tgw_jumbo")
    exact = ping(lab, "mgmt", host0.overlay, "-M", "do", "-s", str(OVERLAY_MTU - ICMP_IP_OVERHEAD), count=1)
    assert exact.returncode == 0, exact.stdout + exact.stderr
    assert lab.counter("tgw_jumbo") > flooded_before, "the full-size frame did not take the multicast path"


VLAN_TAG = 4  # 802.1Q: a guest frame on a VLAN is this much longer inside VXLAN
GUEST_MTU = OVERLAY_MTU - VLAN_TAG  # what the registration caps the VR's interfaces at


def rx_bytes(lab: Lab, name: str, dev: str = "ethovl0") -> int:
    return int(lab.run(name, "cat", f"/sys/class/net/{dev}/statistics/rx_bytes").stdout)


def test_full_size_tagged_guest_frame_fits_the_transit_gateway_only_at_overlay_mtu_minus_4(lab: Lab):
    # A guest on VLAN 4094 (bridge brethovl0-4094 on the port): its frames cross
    # the overlay tagged. Sent to an unknown MAC, the bridge floods it to the
    # multicast group, i.e. through the Transit Gateway (8500 bytes at most).
    fits_before, dropped_before = lab.counter("tgw_jumbo"), lab.counter("tgw_too_big")
    received = rx_bytes(lab, "host0")
    sent = lab.tool("mgmt", "tagged", "cloudbr0", "4094", str(GUEST_MTU))
    assert int(sent.stdout) == 14 + VLAN_TAG + GUEST_MTU
    # Counted once per receiving port of the subnet (every member of the group).
    fits = lab.counter("tgw_jumbo")
    assert fits > fits_before, "the 8500-byte VXLAN packet did not cross"
    assert lab.counter("tgw_too_big") == dropped_before
    # The VXLAN device counts a received frame without its Ethernet header
    # (vxlan_rcv: after eth_type_trans): tag + payload.
    deadline = time.monotonic() + 3
    while rx_bytes(lab, "host0") - received < VLAN_TAG + GUEST_MTU and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rx_bytes(lab, "host0") - received >= VLAN_TAG + GUEST_MTU, "host0 did not receive the frame"
    # A guest at the overlay MTU itself: 8504 bytes on the wire, and the Transit
    # Gateway drops it (the reason the VR MTUs are overlayMtu - 4).
    lab.tool("mgmt", "tagged", "cloudbr0", "4094", str(OVERLAY_MTU))
    assert lab.counter("tgw_too_big") > dropped_before
    assert lab.counter("tgw_jumbo") == fits


# --- TCP MSS towards the internet (1500 bytes, no path-MTU discovery) --------


def bulk(lab: Lab, client: str, address: str, port: int, timeout: float = 3) -> tuple[str, int]:
    """BULK_BYTES up and BULK_BYTES down on one connection; (greeting, MSS
    option of the SYN-ACK the client received)."""
    result = lab.tool(client, "bulk", address, str(port), str(BULK_BYTES), str(BULK_BYTES), str(timeout),
                      check=False, timeout=4 * timeout + 10)
    assert result.returncode == 0, f"{client} -> {address}:{port}: {result.stdout}{result.stderr}"
    greeting, synack, done = result.stdout.splitlines()
    assert done == f"up {BULK_BYTES} down {BULK_BYTES} ok"
    return greeting, int(synack.removeprefix("synack mss "))


def syn_mss_seen(server: Process, since: int, source: str, timeout: float = 3) -> set[int]:
    """MSS options of the SYNs from `source` the server printed after line `since`."""
    deadline = time.monotonic() + timeout
    while True:
        found = {int(m.group(1)) for line in server.lines[since:]
                 if (m := re.fullmatch(rf"syn {re.escape(source)} mss (\d+)", line))}
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def pmtud_dropped(lab: Lab) -> int:
    # "Fragmentation needed" the lab's internet gateway swallowed: a packet was too big.
    return lab.counter("pmtud_dropped", "vpcr", "ip ec2_igw")


def test_member_and_jumbo_internet_host_exchange_64k_with_mss_clamped(lab: Lab):
    # The far host is on a jumbo LAN (it announces 9001 - 40) behind the internet
    # gateway's 1500 bytes; the member announces 8450 - 40. Unclamped, the
    # member's big segments die at the gateway, which reports nothing.
    seen = len(lab.far_server.lines)
    dropped = pmtud_dropped(lab)
    greeting, synack_mss = bulk(lab, "host0", FAR_HOST, INTERNET_PORT)
    assert greeting == f"far {ELASTIC_IP}"
    assert syn_mss_seen(lab.far_server, seen, ELASTIC_IP) == {INTERNET_MSS}, "the member's SYN was not clamped"
    assert synack_mss == INTERNET_MSS, "the far host's SYN-ACK was not clamped"
    assert pmtud_dropped(lab) == dropped, "a packet was too big for the internet gateway"


def test_jumbo_internet_client_exchanges_64k_with_management_server_through_dnat(lab: Lab):
    # Through ROUTER_DNAT: the client's SYN (9001 - 40) is clamped on its way in,
    # the management server's SYN-ACK (8450 - 40) on its way out.
    seen = len(lab.mgmt_ui.lines)
    dropped = pmtud_dropped(lab)
    greeting, synack_mss = bulk(lab, "far", ELASTIC_IP, UI_PORT)
    assert greeting == f"mgmt-ui {FAR_HOST}"
    assert syn_mss_seen(lab.mgmt_ui, seen, FAR_HOST) == {INTERNET_MSS}, "the client's SYN was not clamped"
    assert synack_mss == INTERNET_MSS, "the management server's SYN-ACK was not clamped"
    assert pmtud_dropped(lab) == dropped, "a packet was too big for the internet gateway"


def test_vpc_traffic_keeps_the_jumbo_mss(lab: Lab):
    # Inside the VPC nothing is clamped: the database sees the member's full
    # overlay MSS, the member the second subnet's.
    seen = len(lab.db_server.lines)
    greeting, synack_mss = bulk(lab, "mgmt", DB_ADDRESS, DB_PORT)
    assert greeting == f"db {MGMT.overlay}"
    assert syn_mss_seen(lab.db_server, seen, MGMT.overlay) == {OVERLAY_MTU - TCPIP_HEADERS}
    # 9001 - 40, or 8450 - 40 once the database has learnt the overlay's path
    # MTU (an earlier test makes the router report it): never the clamp's 1460.
    assert synack_mss in (UNDERLAY_MTU - TCPIP_HEADERS, OVERLAY_MTU - TCPIP_HEADERS)
