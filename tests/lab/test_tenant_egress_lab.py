"""Tenants' budgets and their own egress address, proven with real packets in the lab.

The router runs overlay-network.sh with TENANT_ADDRESS (the third private address of
its ENI, netlab.TENANT_ADDRESS, whose Elastic IP is netlab.TENANT_EIP). Stand-ins on
the overlay, plugged into the KVM hosts' cloudbr0 as in test_isolation_lab.py:

    tflood  10.100.128.10  a tenant (public range) that floods the VPC resolver
    tquiet  10.100.128.11  another tenant
    tsys    10.100.64.10   a system VM (the pod's system range)

The VPC resolver stand-in drops what one network interface sends beyond 1024 packets
a second, as the real one does (labnet_tools.DNS_PACKETS_PER_SECOND); every query of
the overlay reaches it from the router's one address. Each check comes with its proof:
the rule responsible removed (or edited), and the outcome flips.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from .netlab import (
    DNS_NAME, ELASTIC_IP, FAR_HOST, INTERNET_CLIENT, INTERNET_PORT, RESOLVER, ROUTER, SCRIPT, TENANT_ADDRESS, TENANT_EIP,
    TOOLS, Lab,
)
from .test_isolation_lab import REFUSED_TIMEOUT, ROUTER_TABLE, connect, counter, plug, without

pytestmark = pytest.mark.lab

FLOODER_IP = "10.100.128.10"
QUIET_IP = "10.100.128.11"
SYSTEM_IP = "10.100.64.10"
#: Twenty times what the VPC resolver takes from one network interface.
FLOOD_RATE = 20000
#: Long enough for every query below (stopped once they are done).
FLOOD_SECONDS = 30
#: Queries of the others during a flood: each gets through an unbudgeted flood with a
#: chance of about 1024/20000, so all of them only by accident (0.05 ** 8).
QUERIES = 8


@pytest.fixture(scope="module")
def tenants(lab: Lab):
    """The lab with the stand-ins and the router given its tenants' address; undone afterwards."""
    lab.router_env = {"TENANT_ADDRESS": TENANT_ADDRESS}
    try:
        result = lab.overlay_script(ROUTER)
        assert TENANT_ADDRESS in result.stdout, result.stdout
        plug(lab, "tflood", "host0", FLOODER_IP)
        plug(lab, "tquiet", "host1", QUIET_IP)
        plug(lab, "tsys", "host1", SYSTEM_IP)
        yield lab
    finally:
        for short in ("tflood", "tquiet", "tsys"):
            lab.del_ns(short)
        lab.router_env = {}
        lab.overlay_script(ROUTER)


def resolves(lab: Lab, client: str, timeout: float = 2, name: str = DNS_NAME) -> bool:
    result = lab.tool(client, "resolve", RESOLVER, name, str(timeout), check=False, timeout=15)
    return result.returncode == 0


def flood_answers(lab: Lab, clients: tuple[str, ...]) -> dict[str, int]:
    """How many of QUERIES queries each client got answered while tflood floods."""
    flood = lab.spawn("tflood", sys.executable, str(TOOLS), "flood", RESOLVER, DNS_NAME, str(FLOOD_SECONDS),
                      str(FLOOD_RATE))
    try:
        answered = {client: 0 for client in clients}
        time.sleep(0.5)  # the resolver's second's worth of packets used up
        for _ in range(QUERIES):
            for client in clients:
                answered[client] += resolves(lab, client, timeout=0.4)
        return answered
    finally:
        assert flood.popen.poll() is None, f"the flood ended before the queries did: {flood.lines}"
        lab.stop(flood)


def test_a_tenant_flooding_dns_does_not_starve_other_tenants_or_system_vms(tenants: Lab):
    assert resolves(tenants, "tquiet") and resolves(tenants, "tsys")
    limited = counter(tenants, "tenant_dns_limited")
    assert flood_answers(tenants, ("tquiet", "tsys")) == {"tquiet": QUERIES, "tsys": QUERIES}
    assert counter(tenants, "tenant_dns_limited") > limited, "the flood was not limited by the tenants' budget"
    # The proof: without the budget, the flood takes the router's 1024 packets a second.
    with without(tenants, "router", ROUTER_TABLE, ("prerouting_filter", "jump dns_budget")):
        answered = flood_answers(tenants, ("tquiet", "tsys"))
        assert answered["tquiet"] < QUERIES and answered["tsys"] < QUERIES, answered


def test_a_tenant_leaves_with_the_tenants_address(tenants: Lab):
    assert connect(tenants, "tquiet", INTERNET_CLIENT, INTERNET_PORT) == (True, f"internet {TENANT_EIP}")
    with without(tenants, "router", ROUTER_TABLE,
                 ("postrouting", f"ip daddr != 10.99.0.0/16 snat to {TENANT_ADDRESS}=>"
                                 f"ip daddr != 10.99.0.0/16 snat to {ROUTER.underlay}")):
        assert connect(tenants, "tquiet", INTERNET_CLIENT, INTERNET_PORT) == (True, f"internet {ELASTIC_IP}")


def test_a_system_vm_leaves_with_the_tenants_address(tenants: Lab):
    assert connect(tenants, "tsys", INTERNET_CLIENT, INTERNET_PORT) == (True, f"internet {TENANT_EIP}")
    with without(tenants, "router", ROUTER_TABLE, ("postrouting", f"snat to {TENANT_ADDRESS}")):
        assert not connect(tenants, "tsys", INTERNET_CLIENT, INTERNET_PORT, REFUSED_TIMEOUT)[0]


def test_the_infrastructure_leaves_with_its_own_address(tenants: Lab):
    assert connect(tenants, "mgmt", INTERNET_CLIENT, INTERNET_PORT) == (True, f"internet {ELASTIC_IP}")
    # Without its rule it would be taken for a tenant on the way out.
    with without(tenants, "router", ROUTER_TABLE, ("postrouting", f"ip saddr 10.100.0.0/18 ip daddr != 10.99.0.0/16")):
        assert connect(tenants, "mgmt", INTERNET_CLIENT, INTERNET_PORT) == (True, f"internet {TENANT_EIP}")


def test_nothing_but_replies_comes_in_through_the_tenants_address(tenants: Lab):
    # The router's own listener (WHOAMI_PORT) and the UI's forward are not offered there.
    refused = counter(tenants, "tenant_address_refused")
    for port in (7000, 8080):
        ok, output = connect(tenants, "inet", TENANT_EIP, port, REFUSED_TIMEOUT)
        assert not ok, output
    assert counter(tenants, "tenant_address_refused") > refused


# --- the tenants' resolver on the router (TENANT_DNS, unbound) ------------------------------

#: Settings of the lab's run of unbound around the router's own (overlay-network.sh
#: dns-config): in the foreground, logging to stderr, no chroot, no trust anchor (the lab
#: has no root servers; the router's Debian/Ubuntu package adds its own).
UNBOUND_RUNTIME = """server:
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    chroot: ""
    username: "unbound"
    use-syslog: no
    logfile: ""
    verbosity: 1
"""


@pytest.fixture
def tenant_resolver(tenants: Lab, tmp_path):
    """start(mode): the router with TENANT_DNS=mode and unbound running with the settings
    the script prints; both undone afterwards."""
    if shutil.which("unbound") is None:
        pytest.fail("unbound is not installed (apt-get install unbound; .ci/apt-packages.txt)", pytrace=False)
    running: list[subprocess.Popen] = []
    tmp_path.chmod(0o755)

    def start(mode: str) -> str:
        for popen in running:
            popen.terminate()
            popen.wait(10)
        running.clear()
        tenants.router_env = {"TENANT_ADDRESS": TENANT_ADDRESS, "TENANT_DNS": mode}
        tenants.overlay_script(ROUTER)
        config = tenants.run("router", "bash", str(SCRIPT), "dns-config", env=tenants.overlay_env(ROUTER)).stdout
        path = tmp_path / "unbound.conf"
        path.write_text(config + UNBOUND_RUNTIME.format(dir=tmp_path))
        path.chmod(0o644)
        running.append(subprocess.Popen(["ip", "netns", "exec", tenants.ns("router"), "unbound", "-d", "-c", str(path)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 15
        while tenants.run("router", "ss", "-Hlun", "sport", "= :53", check=False).stdout.strip() == "":
            assert time.monotonic() < deadline and running[0].poll() is None, f"unbound did not start: {config}"
            time.sleep(0.2)
        return config

    try:
        yield start
    finally:
        for popen in running:
            popen.terminate()
            popen.wait(10)
        tenants.router_env = {"TENANT_ADDRESS": TENANT_ADDRESS}
        tenants.overlay_script(ROUTER)


def vpc_queries(lab: Lab, name: str = DNS_NAME) -> int:
    """Queries for `name` the VPC resolver has seen from the router's address."""
    return sum(1 for line in lab.resolver.lines if line == f"query {ROUTER.underlay} {name}")


def test_forward_mode_answers_tenants_from_the_routers_cache_in_front_of_the_vpc_resolver(
        tenants: Lab, tenant_resolver):
    config = tenant_resolver("forward")
    assert f"interface: {ROUTER.overlay}" in config and f"forward-addr: {RESOLVER}" in config
    before = vpc_queries(tenants)
    assert resolves(tenants, "tquiet") and resolves(tenants, "tflood")
    # Asked once for both tenants: the second answer came from the router's cache.
    assert vpc_queries(tenants) == before + 1
    # The proof: without the router's resolver each query reaches the VPC resolver.
    with without(tenants, "router", ROUTER_TABLE, ("prerouting", f"dnat to {ROUTER.overlay}")):
        assert resolves(tenants, "tquiet") and resolves(tenants, "tflood")
        assert vpc_queries(tenants) == before + 3


def test_recurse_mode_keeps_the_vpcs_private_names_from_tenants_not_from_system_vms(tenants: Lab, tenant_resolver):
    config = tenant_resolver("recurse")
    assert "forward-zone" not in config
    before = vpc_queries(tenants)
    assert not resolves(tenants, "tquiet"), "a tenant resolved the VPC's private name"
    assert vpc_queries(tenants) == before, "the router's resolver asked the VPC resolver"
    # System VMs keep the VPC resolver (EFS's name is a VPC name).
    assert resolves(tenants, "tsys")
    # The proof: the same tenant, with the router's resolver forwarding to the VPC resolver.
    tenant_resolver("forward")
    assert resolves(tenants, "tquiet")


RESOLVER_SOURCES = """table ip lab_resolver
delete table ip lab_resolver
table ip lab_resolver {
    counter tenants { }
    counter router { }
    chain prerouting { type filter hook prerouting priority raw; policy accept;
        iifname "vr-sub" ip saddr %s udp dport 53 ip daddr != %s counter name "tenants"
        iifname "vr-sub" ip saddr %s udp dport 53 ip daddr != %s counter name "router"
    }
}
""" % (TENANT_ADDRESS, RESOLVER, ROUTER.underlay, RESOLVER)


def resolver_sources(lab: Lab) -> tuple[int, int]:
    """(from the tenants' address, from the router's) of the DNS queries the VPC router saw
    going elsewhere than the VPC resolver since the table was loaded: the recursion's."""
    return lab.counter("tenants", "vpcr", "ip lab_resolver"), lab.counter("router", "vpcr", "ip lab_resolver")


def test_the_routers_recursion_leaves_with_the_tenants_address(tenants: Lab, tenant_resolver):
    tenant_resolver("recurse")
    tenants.run("vpcr", "nft", "-f", "-", input=RESOLVER_SOURCES)
    try:
        # The lab has no root servers: the queries go out, unanswered.
        resolves(tenants, "tquiet", timeout=1)
        assert resolver_sources(tenants)[0] > 0 and resolver_sources(tenants)[1] == 0, resolver_sources(tenants)
        with without(tenants, "router", ROUTER_TABLE, ("postrouting", "meta skuid")):
            tenants.run("vpcr", "nft", "-f", "-", input=RESOLVER_SOURCES)
            # Another name: the first one's failure may be cached.
            resolves(tenants, "tquiet", timeout=1, name="other.lab.internal")
            assert resolver_sources(tenants)[1] > 0, resolver_sources(tenants)
    finally:
        tenants.run("vpcr", "nft", "delete", "table", "ip", "lab_resolver", check=False)


def test_dns_config_is_refused_without_a_tenant_resolver(tenants: Lab):
    result = tenants.run("router", "bash", str(SCRIPT), "dns-config", env=tenants.overlay_env(ROUTER), check=False)
    assert result.returncode == 2 and "TENANT_DNS='' is invalid" in result.stderr, result.stderr


def test_dns_config_reads_no_device_and_changes_nothing(tenants: Lab):
    # The router's boot writes unbound's settings before the overlay is up: a namespace
    # without the router's devices (a tenant stand-in's) prints the same settings.
    env = {**tenants.overlay_env(ROUTER), "TENANT_DNS": "forward"}
    before = tenants.state("tflood")
    printed = tenants.run("tflood", "bash", str(SCRIPT), "dns-config", env=env)
    assert printed.stdout == tenants.run("router", "bash", str(SCRIPT), "dns-config", env=env).stdout
    assert f"forward-addr: {RESOLVER}" in printed.stdout and tenants.state("tflood") == before


@pytest.mark.parametrize("env, words", [
    ({"TENANT_DNS": "vpc"}, "expected empty, forward"),
    ({"TENANT_DNS": "recurse"}, "needs TENANT_ADDRESS"),
    ({"TENANT_ADDRESS": "192.0.2.7"}, "inside VPC_CIDR"),
    ({"TENANT_REFUSED": "0.0.0.0/0"}, "not 0.0.0.0/0"),
])
def test_bad_tenant_settings_are_refused_before_anything_changes(tenants: Lab, env: dict, words: str):
    result = tenants.run("router", "bash", str(SCRIPT), env={**tenants.overlay_env(ROUTER), "TENANT_ADDRESS": "",
                                                               **env}, check=False)
    assert result.returncode == 2 and words in result.stderr and "nothing was changed" in result.stderr, result.stderr


# --- public destinations the VPC routes elsewhere (TENANT_REFUSED) ----------------------------

@pytest.fixture
def refused(tenants: Lab):
    """apply(**variables): the router with the tenants' address and `variables`; undone afterwards."""
    def apply(**variables: str) -> None:
        tenants.router_env = {"TENANT_ADDRESS": TENANT_ADDRESS, **variables}
        result = tenants.overlay_script(ROUTER)
        assert result.returncode == 0, result.stderr

    try:
        yield apply
    finally:
        tenants.router_env = {"TENANT_ADDRESS": TENANT_ADDRESS}
        tenants.overlay_script(ROUTER)


def test_a_public_prefix_the_vpc_routes_elsewhere_is_refused_to_tenants_unless_named(tenants: Lab, refused):
    # The far host's network stands for a gateway endpoint's prefixes or a VPN's routes.
    assert connect(tenants, "tquiet", FAR_HOST, INTERNET_PORT) == (True, f"far {TENANT_EIP}")
    refused(TENANT_REFUSED="192.0.2.0/24")
    before = counter(tenants, "tenant_refused")
    assert not connect(tenants, "tquiet", FAR_HOST, INTERNET_PORT, REFUSED_TIMEOUT)[0]
    assert counter(tenants, "tenant_refused") > before
    # The infrastructure is not a tenant.
    assert connect(tenants, "mgmt", FAR_HOST, INTERNET_PORT) == (True, f"far {ELASTIC_IP}")
    # The proof: the prefix out of the tenants' refused set.
    with without(tenants, "router", ROUTER_TABLE, ("from_tenant", "192.0.2.0/24, =>")):
        assert connect(tenants, "tquiet", FAR_HOST, INTERNET_PORT) == (True, f"far {TENANT_EIP}")
    # tenantVpcAccessCidrs opens it again.
    refused(TENANT_REFUSED="192.0.2.0/24", TENANT_VPC_ACCESS="192.0.2.0/24")
    assert connect(tenants, "tquiet", FAR_HOST, INTERNET_PORT) == (True, f"far {TENANT_EIP}")


# --- new connections per tenant address ---------------------------------------------------

NEW_FLOWS = 1000
#: Each datagram from a socket of its own: a new flow (conntrack entry) through the router.
SEND_FLOWS = f"""
import socket
for _ in range({NEW_FLOWS}):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"x", ("{INTERNET_CLIENT}", 9))
"""
FLOW_COUNTER = """table ip lab_flows
delete table ip lab_flows
table ip lab_flows {
    counter flows { }
    chain forward { type filter hook forward priority filter; policy accept;
        udp dport 9 counter name "flows"
    }
}
"""


def flows_through(lab: Lab, client: str) -> int:
    """How many of NEW_FLOWS new UDP flows from `client` the VPC router passed to the internet."""
    lab.run("vpcr", "nft", "-f", "-", input=FLOW_COUNTER)
    try:
        lab.run(client, sys.executable, "-c", SEND_FLOWS, timeout=60)
        time.sleep(0.2)
        return lab.counter("flows", "vpcr", "ip lab_flows")
    finally:
        lab.run("vpcr", "nft", "delete", "table", "ip", "lab_flows", check=False)


def test_a_tenants_new_connections_are_limited_per_address(tenants: Lab):
    limited = counter(tenants, "tenant_new_limited")
    passed = flows_through(tenants, "tquiet")
    # The burst (400, less what earlier tests' connections of the same address may still
    # owe) and the rate (200 a second) for as long as the sending takes.
    assert 350 <= passed < NEW_FLOWS, passed
    assert counter(tenants, "tenant_new_limited") - limited == NEW_FLOWS - passed
    # System VMs are not limited, nor a tenant without the rule.
    assert flows_through(tenants, "tsys") == NEW_FLOWS
    with without(tenants, "router", ROUTER_TABLE, ("from_tenant", "tenant_new_limited")):
        assert flows_through(tenants, "tquiet") == NEW_FLOWS
