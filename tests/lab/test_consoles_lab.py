"""VM consoles from outside the overlay, proven with real packets in the namespace lab.

The design (components/model/consoles.py): the router's ENI has a second private address,
the console address, with an Elastic IP of its own (netlab CONSOLE_ADDRESS and
CONSOLE_EIP; the lab's VPC router delivers the address to the router's underlay
interface and its internet gateway maps the EIP to it, as EC2 does). The router runs
the REAL overlay-network.sh with CONSOLE_ADDRESS and CONSOLE_FORWARDS, which forward
the console page (80) and noVNC's websocket (8080) to the console proxy VM's public
NIC, a public-range address on the overlay. Here a stand-in namespace plugged into
host1's cloudbr0 plays the console proxy: an HTTP page at noVNC's path on 80 and a
greeting on 8080 (and, to catch leaks, listeners on 22 and 443).

Who may connect is the router's security group: components.model.routeraccess.router_ingress
(with the member group the router also carries, components/resources/underlay.py) rendered as a
stateful filter on the router's underlay ingress (netlab.security_group_filter: EC2's
stateful security group semantics). The internet client (203.0.113.2) is inside
adminCidrs, the far host (192.0.2.20) is not, the database subnet is the VPC.

Where practical, a check is repeated with the rule responsible removed, and the
outcome flips.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import sys
import time

import pytest

from components.model import consoles
from components.model import ipplan
from components.model import routeraccess
from components.resources.underlay import IGMP_PROTOCOL, IGMP_QUERIER, VXLAN_PORT

from .netlab import (
    CONSOLE_ADDRESS, CONSOLE_EIP, DB_ADDRESS, ELASTIC_IP, FAR_HOST, INTERNET_CLIENT, INTERNET_PORT, MGMT,
    OVERLAY_CIDR, ROUTER, SCRIPT,
    SUBNET_CIDR, TOOLS, UI_PORT, VPC_CIDR, WHOAMI_PORT, Lab, security_group_filter,
)
from .test_isolation_lab import ROUTER_TABLE, bridge_mac, connect, plug, without

pytestmark = pytest.mark.lab

#: The system VMs' public range (ipplan system_public_range of the lab's 10.100.0.0/16:
#: 10.100.192.1-10.100.192.8), registered with forsystemvms: no tenant gets its addresses.
CONSOLE_RANGE = str(ipplan.system_public_range(ipaddress.IPv4Network(OVERLAY_CIDR)))
CPVM_IP = "10.100.192.3"        # the console proxy's public NIC, in CONSOLE_RANGE
CPVM_MOVED_IP = "10.100.192.4"  # ... after CloudStack recreated it
TENANT_IP = "10.100.128.7"      # the public range: a tenant's virtual router may hold it
ADMIN_CIDRS = ["203.0.113.0/24"]  # the internet client's network; FAR_HOST is outside
PAGE = "/resource/noVNC/vnc.html"  # ConsoleAccessManagerImpl.generateConsoleAccessUrl's page
SG_TABLE = "ec2_security_group"
REFUSED_TIMEOUT = 1.5
LEAK_PORTS = (22, 443)          # the stand-in listens there too: an undeclared port must not reach it
#: What the member security group (components/resources/underlay.py member_sg, which the router
#: also carries) admits: IGMP queries from the Transit Gateway, VXLAN from the subnet.
MEMBER_GROUP = [
    routeraccess.IngressRule(IGMP_PROTOCOL, 0, 0, (IGMP_QUERIER,), "IGMP membership queries"),
    routeraccess.IngressRule("udp", VXLAN_PORT, VXLAN_PORT, (SUBNET_CIDR,), "VXLAN"),
]


def router_groups(extra=()) -> list:
    return [*routeraccess.router_ingress(VPC_CIDR, ADMIN_CIDRS, []), *MEMBER_GROUP, *extra]


def load_security_group(lab: Lab, rules) -> None:
    lab.run("router", "nft", "-f", "-", input=security_group_filter(rules, "ens5", SG_TABLE))


@contextlib.contextmanager
def security_group(lab: Lab, rules):
    """The router's security group replaced by `rules`, the deployed one restored afterwards."""
    load_security_group(lab, rules)
    try:
        yield
    finally:
        load_security_group(lab, router_groups())


@contextlib.contextmanager
def no_security_group(lab: Lab):
    lab.run("router", "nft", "delete", "table", "ip", SG_TABLE)
    try:
        yield
    finally:
        load_security_group(lab, router_groups())


#: Where the router forwards the console now (the console-forwards parameter's address).
PROXY = {"ip": CPVM_IP}


def page(lab: Lab, client: str, address: str, port: int = consoles.CONSOLE_PAGE_PORT,
         timeout: float = 3) -> tuple[bool, str]:
    result = lab.tool(client, "get", address, str(port), PAGE, str(timeout), check=False, timeout=timeout + 10)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def sg_refused(lab: Lab) -> int:
    return lab.counter("refused", "router", f"ip {SG_TABLE}")


@pytest.fixture(scope="module")
def console(lab: Lab):
    """The session lab with a console proxy stand-in, the router's console address and
    its security group; all undone afterwards (the other lab modules see the lab as built)."""
    servers = []
    before = bridge_mac(lab, "host1")
    base = lab.overlay_env

    def with_console(inst):
        # The user data's CONSOLE_ADDRESS, and CONSOLE_FORWARDS as router.sh forwards
        # writes it to forwards.env from the console-forwards parameter.
        env = base(inst)
        if inst.role == "router":
            env.update(CONSOLE_ADDRESS=CONSOLE_ADDRESS, CONSOLE_RANGE=CONSOLE_RANGE,
                       CONSOLE_FORWARDS=consoles.console_forwards(PROXY["ip"]))
        return env

    # The router's configuration for this module: the lab's plus the console. The
    # helpers that restore the router's table (test_isolation_lab.without) re-run the
    # script through lab.overlay_env, so they restore this one.
    lab.overlay_env = with_console
    try:
        plug(lab, "cpvm", "host1", CPVM_IP)
        servers.append(lab.spawn("cpvm", sys.executable, str(TOOLS), "page", "console-page", "0.0.0.0",
                                 str(consoles.CONSOLE_PAGE_PORT), PAGE))
        servers.append(lab.spawn("cpvm", sys.executable, str(TOOLS), "whoami", "console-websocket", "0.0.0.0",
                                 str(consoles.CONSOLE_WEBSOCKET_PORT)))
        for port in LEAK_PORTS:
            servers.append(lab.spawn("cpvm", sys.executable, str(TOOLS), "whoami", f"console-{port}", "0.0.0.0",
                                     str(port)))
        # An infrastructure listener on a port the security group admits from the VPC.
        servers.append(lab.spawn("host0", sys.executable, str(TOOLS), "whoami", "host0-8080", "0.0.0.0",
                                 str(UI_PORT)))
        result = lab.overlay_script(ROUTER)
        assert result.returncode == 0, result.stderr
        load_security_group(lab, router_groups())
        yield lab
    finally:
        lab.run("router", "nft", "delete", "table", "ip", SG_TABLE, check=False)
        for server in servers:
            lab.stop(server)
        lab.del_ns("cpvm")
        del lab.overlay_env  # the Lab's own method again
        PROXY["ip"] = CPVM_IP
        lab.overlay_script(ROUTER)  # back to the router without a console
        assert bridge_mac(lab, "host1") == before


def test_the_security_group_is_the_deployed_list(console: Lab):
    # What is loaded is router_ingress itself (UI/websocket 8080 and page 80 from the
    # VPC and adminCidrs, ICMP frag-needed) plus the member group, rule for rule.
    rules = router_groups()
    assert [r.from_port for r in rules if r.protocol == "tcp"] == [8080, 80, 8080, 80]
    table = console.run("router", "nft", "list", "table", "ip", SG_TABLE).stdout
    assert "ct state established,related accept" in table
    accepts = [line.strip() for line in table.splitlines() if line.strip().endswith("accept")]
    assert len(accepts) == len(rules) + 2, table  # + the other interfaces, + established/related
    assert f"ip saddr {ADMIN_CIDRS[0]} tcp dport 80 accept" in accepts, accepts
    assert f"ip saddr {VPC_CIDR} tcp dport 8080 accept" in accepts, accepts


def test_console_page_and_websocket_reach_the_console_proxy_from_an_admin_source(console: Lab):
    assert page(console, "inet", CONSOLE_EIP) == (True, f"200 console-page {INTERNET_CLIENT}")
    assert connect(console, "inet", CONSOLE_EIP, consoles.CONSOLE_WEBSOCKET_PORT) == \
        (True, f"console-websocket {INTERNET_CLIENT}")
    # 8080 on the router's own address is still the UI: one port, two destinations.
    assert connect(console, "inet", ELASTIC_IP, UI_PORT) == (True, f"mgmt-ui {INTERNET_CLIENT}")
    # The VPC (the security group's VPC rule) reaches the console at the private address.
    assert page(console, "db", CONSOLE_ADDRESS) == (True, f"200 console-page {DB_ADDRESS}")
    assert connect(console, "db", CONSOLE_ADDRESS, consoles.CONSOLE_WEBSOCKET_PORT) == \
        (True, f"console-websocket {DB_ADDRESS}")
    # Their rule: the console's DNAT. Without it the console address forwards nothing.
    with without(console, "router", ROUTER_TABLE, ("prerouting", f"tcp dport 80 dnat to {CPVM_IP}:80"),
                 ("prerouting", f"tcp dport 8080 dnat to {CPVM_IP}:8080")):
        assert not page(console, "inet", CONSOLE_EIP, timeout=REFUSED_TIMEOUT)[0]
        assert not connect(console, "inet", CONSOLE_EIP, consoles.CONSOLE_WEBSOCKET_PORT, REFUSED_TIMEOUT)[0]
        assert connect(console, "inet", ELASTIC_IP, UI_PORT) == (True, f"mgmt-ui {INTERNET_CLIENT}")


def test_a_source_outside_admin_cidrs_reaches_neither_console_port(console: Lab):
    refused = sg_refused(console)
    assert not page(console, "far", CONSOLE_EIP, timeout=REFUSED_TIMEOUT)[0], "the console page opened"
    ok, output = connect(console, "far", CONSOLE_EIP, consoles.CONSOLE_WEBSOCKET_PORT, REFUSED_TIMEOUT)
    assert not ok, f"the console websocket opened from {FAR_HOST}: {output}"
    assert not connect(console, "far", ELASTIC_IP, UI_PORT, REFUSED_TIMEOUT)[0]
    assert sg_refused(console) >= refused + 3, "refused by something else than the security group"
    # The security group is what refuses them: without it, they connect.
    with no_security_group(console):
        assert page(console, "far", CONSOLE_EIP) == (True, f"200 console-page {FAR_HOST}")
        assert connect(console, "far", CONSOLE_EIP, consoles.CONSOLE_WEBSOCKET_PORT) == \
            (True, f"console-websocket {FAR_HOST}")


def test_an_undeclared_port_of_the_console_address_reaches_nothing(console: Lab):
    # The security group admits 80 and 8080 only ...
    for port in LEAK_PORTS:
        assert not connect(console, "inet", CONSOLE_EIP, port, REFUSED_TIMEOUT)[0], f"port {port} reached the proxy"
    # ... and with a group that admitted every TCP port from adminCidrs, the router
    # still forwards the console's two ports only, and nothing else of the overlay.
    everything = routeraccess.IngressRule("tcp", 1, 65535, tuple(ADMIN_CIDRS), "every TCP port")
    with security_group(console, router_groups([everything])):
        forget_console_neighbour(console)
        refused = console.counter("console_refused", "router", ROUTER_TABLE)
        for port in (*LEAK_PORTS, WHOAMI_PORT):
            ok, output = connect(console, "inet", CONSOLE_EIP, port, REFUSED_TIMEOUT)
            assert not ok, f"port {port} of the console address reached {output}"
        # Refused by the router's own rule: never routed on (no neighbour lookup).
        assert console.counter("console_refused", "router", ROUTER_TABLE) >= refused + 3
        assert not console_neighbour(console), "the router tried to deliver a packet to its own console address"
        with without(console, "router", ROUTER_TABLE, ("isolation", "console_refused")):
            forget_console_neighbour(console)
            assert not connect(console, "inet", CONSOLE_EIP, 22, REFUSED_TIMEOUT)[0]
            # Without it, the router forwards the packet back onto the subnet, towards
            # an address of its own ENI (here nobody answers; on EC2 it is the router).
            assert console_neighbour(console), "the packet was not forwarded without the rule either"
        # The console page is on the console address only, not on the router's own.
        assert not page(console, "inet", ELASTIC_IP, timeout=REFUSED_TIMEOUT)[0]
        assert page(console, "inet", CONSOLE_EIP) == (True, f"200 console-page {INTERNET_CLIENT}")
        # The proof that a forward would have reached the listener: point the
        # console's 8080 rule at 443 instead, and 443 connects.
        with without(console, "router", ROUTER_TABLE,
                     ("prerouting", f"tcp dport 8080 dnat to {CPVM_IP}:8080=>tcp dport 443 dnat to {CPVM_IP}:443")):
            assert connect(console, "inet", CONSOLE_EIP, 443) == (True, f"console-443 {INTERNET_CLIENT}")


def console_neighbour(lab: Lab) -> str:
    """The router's neighbour entry for its console address: made only when it routes a packet there."""
    return lab.ip("router", "-4", "neigh", "show", "to", CONSOLE_ADDRESS, "dev", "ens5").stdout.strip()


def forget_console_neighbour(lab: Lab) -> None:
    lab.ip("router", "-4", "neigh", "flush", "to", CONSOLE_ADDRESS, "dev", "ens5", check=False)


def test_infrastructure_and_the_proxy_itself_stay_unreachable_from_outside(console: Lab):
    # The VPC may open 80 and 8080 (security group), but only through the forwards:
    # not an infrastructure address (host0), not the console proxy's own address.
    refused = console.counter("inbound_refused", "router", ROUTER_TABLE)
    for address, port in ((console.instances["host0"].overlay, UI_PORT), (CPVM_IP, consoles.CONSOLE_PAGE_PORT),
                          (CPVM_IP, consoles.CONSOLE_WEBSOCKET_PORT)):
        ok, output = connect(console, "db", address, port, REFUSED_TIMEOUT)
        assert not ok, f"the VPC reached {address}:{port} directly: {output}"
    assert console.counter("inbound_refused", "router", ROUTER_TABLE) >= refused + 3
    # The management UI at its own address stays open to the VPC (ROUTER_DNAT's direct rule).
    assert connect(console, "db", MGMT.overlay, UI_PORT) == (True, f"mgmt-ui {DB_ADDRESS}")
    with without(console, "router", ROUTER_TABLE, ("into_overlay", "inbound_refused")):
        assert connect(console, "db", console.instances["host0"].overlay, UI_PORT) == \
            (True, f"host0-8080 {DB_ADDRESS}")


def move_proxy(lab: Lab, old: str, new: str) -> None:
    """The console proxy recreated with another public-range address."""
    lab.ip("cpvm", "addr", "del", f"{old}/16", "dev", "eth0")
    lab.ip("cpvm", "addr", "add", f"{new}/16", "dev", "eth0")
    lab.ip("cpvm", "route", "replace", "default", "via", ROUTER.overlay)


def test_changed_console_forwards_apply_to_the_running_router_in_place(console: Lab):
    assert page(console, "inet", CONSOLE_EIP) == (True, f"200 console-page {INTERNET_CLIENT}")
    move_proxy(console, CPVM_IP, CPVM_MOVED_IP)
    try:
        # The router still forwards to the former address: the console is gone.
        assert not page(console, "inet", CONSOLE_EIP, timeout=REFUSED_TIMEOUT)[0]
        # router.sh forwards: the new console-forwards value, the script re-run while
        # a UI connection through the router's own address stays open.
        hold = subprocess.Popen(["ip", "netns", "exec", console.ns("inet"), sys.executable, str(TOOLS), "hold",
                                 ELASTIC_IP, str(UI_PORT), "3"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        try:
            time.sleep(0.5)
            PROXY["ip"] = CPVM_MOVED_IP
            result = console.overlay_script(ROUTER)
            assert result.returncode == 0, result.stderr
            assert "creating" not in result.stdout and "replacing" not in result.stdout, result.stdout
            output = hold.communicate(timeout=20)[0]
        finally:
            if hold.poll() is None:
                hold.kill()
                hold.wait(5)
        assert hold.returncode == 0 and output.startswith(f"mgmt-ui {INTERNET_CLIENT}"), output
        assert page(console, "inet", CONSOLE_EIP) == (True, f"200 console-page {INTERNET_CLIENT}")
        assert connect(console, "inet", CONSOLE_EIP, consoles.CONSOLE_WEBSOCKET_PORT) == \
            (True, f"console-websocket {INTERNET_CLIENT}")
        assert connect(console, "inet", ELASTIC_IP, UI_PORT) == (True, f"mgmt-ui {INTERNET_CLIENT}")
        table = console.run("router", "nft", "list", "table", *ROUTER_TABLE.split()).stdout
        assert CPVM_IP not in table and f"dnat to {CPVM_MOVED_IP}:80" in table, table
    finally:
        move_proxy(console, CPVM_MOVED_IP, CPVM_IP)
        PROXY["ip"] = CPVM_IP
        assert console.overlay_script(ROUTER).returncode == 0


@pytest.mark.parametrize("value, words", [
    # A tenant address (the public range): where a recreated proxy's former address
    # may have gone. Only CONSOLE_RANGE keeps it out.
    (consoles.console_forwards(TENANT_IP), f"outside CONSOLE_RANGE {CONSOLE_RANGE}"),
    (f"tcp:80:{MGMT.overlay}:80 tcp:8080:{MGMT.overlay}:8080", "outside CONSOLE_RANGE"),
    ("tcp:80:10.100.64.9:80 tcp:8080:10.100.64.9:8080", "outside CONSOLE_RANGE"),
    (f"tcp:443:{CPVM_IP}:443 tcp:8080:{CPVM_IP}:8080", "'tcp:80:IP:80 tcp:8080:IP:8080'"),
])
def test_the_running_router_refuses_console_forwards_to_anything_else(console: Lab, value: str, words: str):
    before = console.run("router", "nft", "list", "table", *ROUTER_TABLE.split()).stdout
    env = {**console.overlay_env(ROUTER), "CONSOLE_FORWARDS": value}
    result = console.run("router", "bash", str(SCRIPT), env=env, check=False)
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert "nothing was changed" in result.stderr
    assert console.run("router", "nft", "list", "table", *ROUTER_TABLE.split()).stdout == before
    assert page(console, "inet", CONSOLE_EIP) == (True, f"200 console-page {INTERNET_CLIENT}")


def test_a_tenant_target_is_forwarded_without_the_range_check(console: Lab):
    # What CONSOLE_RANGE refuses would otherwise be forwarded: the same value with
    # the range widened to the public range, and the console reaches the tenant.
    plug(console, "tenantvr", "host1", TENANT_IP)
    server = console.spawn("tenantvr", sys.executable, str(TOOLS), "whoami", "tenant-8080", "0.0.0.0",
                           str(consoles.CONSOLE_WEBSOCKET_PORT))
    try:
        env = {**console.overlay_env(ROUTER), "CONSOLE_FORWARDS": consoles.console_forwards(TENANT_IP)}
        refused = console.run("router", "bash", str(SCRIPT), env=env, check=False)
        assert refused.returncode == 2 and "outside CONSOLE_RANGE" in refused.stderr, refused.stderr
        widened = console.run("router", "bash", str(SCRIPT), env={**env, "CONSOLE_RANGE": "10.100.128.1-10.100.192.8"},
                              check=False)
        assert widened.returncode == 0, widened.stderr
        assert connect(console, "inet", CONSOLE_EIP, consoles.CONSOLE_WEBSOCKET_PORT) == \
            (True, f"tenant-8080 {INTERNET_CLIENT}")
    finally:
        console.stop(server)
        console.del_ns("tenantvr")
        assert console.overlay_script(ROUTER).returncode == 0


# --- the console address on the router's interface (cloud-init) --------------------------


@contextlib.contextmanager
def console_address_on_ens5(lab: Lab, first: bool):
    """The console address on the router's ens5 as Ubuntu's cloud-init puts it
    (DataSourceEc2 apply_full_imds_network_config: the ENI's secondary addresses as
    static addresses beside DHCP), listed before or after the DHCP address; the
    overlay script re-run, as at the router's boot. Undone afterwards."""
    prefix = SUBNET_CIDR.split("/")[1]
    promote = "net.ipv4.conf.ens5.promote_secondaries"
    lab.sysctl("router", promote, 1)
    try:
        lab.ip("router", "addr", "add", f"{CONSOLE_ADDRESS}/{prefix}", "dev", "ens5")
        if first:
            # The DHCP address re-added after it: the console address is promoted
            # to primary and listed first.
            lab.ip("router", "addr", "del", f"{ROUTER.underlay}/{prefix}", "dev", "ens5")
            lab.ip("router", "addr", "add", f"{ROUTER.underlay}/{prefix}", "dev", "ens5")
        listed = [line.split()[3] for line in lab.ip("router", "-4", "-o", "addr", "show", "dev", "ens5").stdout
                  .splitlines()]
        expected = [f"{CONSOLE_ADDRESS}/{prefix}", f"{ROUTER.underlay}/{prefix}"]
        assert listed == (expected if first else expected[::-1]), listed
        result = lab.overlay_script(ROUTER)
        assert result.returncode == 0, result.stderr
        yield result
    finally:
        lab.ip("router", "addr", "del", f"{CONSOLE_ADDRESS}/{prefix}", "dev", "ens5", check=False)
        lab.sysctl("router", promote, 0)
        assert lab.overlay_script(ROUTER).returncode == 0
        lab.wait_overlay()


@pytest.mark.parametrize("first", [True, False], ids=["console-address-listed-first", "listed-second"])
def test_the_router_with_the_console_address_on_its_interface(console: Lab, first: bool):
    with console_address_on_ens5(console, first) as result:
        # The underlay address is the ENI's primary one, whatever the order.
        assert f"underlay ens5 ({ROUTER.underlay}/" in result.stdout, result.stdout
        table = console.run("router", "nft", "list", "table", *ROUTER_TABLE.split()).stdout
        assert f"ip daddr {ROUTER.underlay} tcp dport {UI_PORT} dnat to {MGMT.overlay}:{UI_PORT}" in table, table
        assert f"snat to {ROUTER.underlay}" in table and f"snat to {CONSOLE_ADDRESS}" not in table, table
        # The overlay (VTEP on the underlay address), the UI and the console work.
        console.wait_overlay()
        assert connect(console, "inet", ELASTIC_IP, UI_PORT) == (True, f"mgmt-ui {INTERNET_CLIENT}")
        assert page(console, "inet", CONSOLE_EIP) == (True, f"200 console-page {INTERNET_CLIENT}")
        assert connect(console, "inet", CONSOLE_EIP, consoles.CONSOLE_WEBSOCKET_PORT) == \
            (True, f"console-websocket {INTERNET_CLIENT}")
        assert page(console, "db", CONSOLE_ADDRESS) == (True, f"200 console-page {DB_ADDRESS}")
        # Other ports of the (now local) console address: dropped and counted on input,
        # even with a security group that admitted every TCP port. The router's own
        # listener (WHOAMI_PORT, every lab instance has one) is not reached.
        everything = routeraccess.IngressRule("tcp", 1, 65535, tuple(ADMIN_CIDRS), "every TCP port")
        with security_group(console, router_groups([everything])):
            refused = console.counter("console_refused", "router", ROUTER_TABLE)
            for port in (*LEAK_PORTS, WHOAMI_PORT):
                ok, output = connect(console, "inet", CONSOLE_EIP, port, REFUSED_TIMEOUT)
                assert not ok, f"port {port} of the console address reached {output}"
            assert console.counter("console_refused", "router", ROUTER_TABLE) >= refused + 3
            # Its rule: without it the router itself answers on the console address.
            with without(console, "router", ROUTER_TABLE, ("input", "console_refused")):
                assert connect(console, "inet", CONSOLE_EIP, WHOAMI_PORT) == (True, f"router {INTERNET_CLIENT}")
        if first:
            # Listed first, it is the source the kernel picks for the router's own
            # connections (the lab's default route names none): their replies pass.
            assert connect(console, "router", INTERNET_CLIENT, INTERNET_PORT) == (True, f"internet {CONSOLE_EIP}")
            with without(console, "router", ROUTER_TABLE,
                         ("input", "ct state ! established,related counter=>counter")):
                assert not connect(console, "router", INTERNET_CLIENT, INTERNET_PORT, REFUSED_TIMEOUT)[0]
