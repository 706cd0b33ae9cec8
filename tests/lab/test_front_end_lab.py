"""The management server answers the UI/API load balancer through the device the connection
came in on (userdata/management-server.sh route_replies), proven with real packets in the
namespace lab (netlab.py).

The database-subnet namespace "db" (10.99.2.10, behind the VPC router) stands for a node of
the load balancer: its subnets lie outside the dedicated one, and it connects to the
management server's VPC (underlay) address, as a target group of type "ip" does
(components/resources/loadbalancer.py). The management server's security groups are
rendered on its underlay device (netlab.security_group_filter, EC2's stateful semantics):
the members' group (IGMP and VXLAN, components/resources/underlay.py) and the group that
admits 8080 from the load balancer's group only, here from the load balancer node's address.

route_replies runs as the boot runs it: the function and its constants taken from the
script, in the management server's namespace, with the lab's own `ip` and `nft`.
"""

from __future__ import annotations

import contextlib
import os
import re
from types import SimpleNamespace

import pytest

from .netlab import (
    DB_ADDRESS, ELASTIC_IP, INTERNET_CLIENT, MGMT, REPO, ROUTER, SUBNET_CIDR, TROUBLEMAKER, UI_PORT, Lab,
    security_group_filter,
)

pytestmark = pytest.mark.lab

SCRIPT = REPO / "userdata" / "management-server.sh"
#: The load balancer node (see above).
LB_NODE = DB_ADDRESS
SG_TABLE = "ec2_management_security_group"
#: The management server's groups: the members' (components/resources/underlay.py: IGMP
#: queries from the Transit Gateway, VXLAN from the dedicated subnet) and the load
#: balancer's management group (8080 from the load balancer's group).
MANAGEMENT_GROUPS = [
    SimpleNamespace(protocol="2", from_port=0, to_port=0, cidrs=("0.0.0.0/0",)),
    SimpleNamespace(protocol="udp", from_port=4789, to_port=4789, cidrs=(SUBNET_CIDR,)),
    SimpleNamespace(protocol="tcp", from_port=UI_PORT, to_port=UI_PORT, cidrs=(f"{LB_NODE}/32",)),
]
HARNESS = 'set -euo pipefail\ncsec2_step() { echo "==> $*"; }\ncsec2_die() { echo "ERROR: $*" >&2; exit 1; }\n'


def route_replies_source() -> str:
    """The constants and the function route_replies, as management-server.sh has them."""
    # Its end: the first "}" alone on a line that does not close the here-document of nft rules.
    match = re.search(r"^REPLY_MARK=.*?^route_replies\(\) \{\n.*?^\}\n(?!NFT)", SCRIPT.read_text(), re.M | re.S)
    assert match, "management-server.sh has no REPLY_MARK ... route_replies() block"
    return match.group(0)


def connect(lab: Lab, client: str, address: str, port: int = UI_PORT, timeout: float = 2):
    """(connected, what the server said)."""
    result = lab.tool(client, "tcp", address, str(port), str(timeout), check=False, timeout=timeout + 10)
    return result.returncode == 0, result.stdout.strip()


def undo(lab: Lab) -> None:
    lab.run("mgmt", "sh", "-c", "while ip rule del fwmark 0xec2 table 3778 2>/dev/null; do :; done; "
            "ip route flush table 3778; nft delete table ip cloudstack_ec2_replies", check=False)


@contextlib.contextmanager
def management_groups(lab: Lab):
    lab.run("mgmt", "nft", "-f", "-", input=security_group_filter(MANAGEMENT_GROUPS, "ens5", SG_TABLE))
    try:
        yield
    finally:
        lab.run("mgmt", "nft", "delete", "table", "ip", SG_TABLE, check=False)


@pytest.fixture
def replies(lab: Lab, tmp_path):
    """route_replies(): runs the boot's step in the management server's namespace; undone
    afterwards (the lab is shared by the session)."""
    undo(lab)

    def run():
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CSEC2_ROOT": str(tmp_path)}
        return lab.run("mgmt", "bash", "-c", HARNESS + route_replies_source() + "route_replies\n", env=env,
                       check=False)

    with management_groups(lab):
        yield run
    undo(lab)


def test_the_load_balancer_reaches_the_management_server_only_once_it_answers_through_the_underlay(lab, replies):
    # Without it the reply follows the default route into the overlay, and the router,
    # which forwards into the VPC only what it NATs or DNATed, never delivers it.
    assert connect(lab, "db", MGMT.underlay) == (False, "")
    r = replies()
    assert r.returncode == 0, r.stdout + r.stderr
    # The management server sees the load balancer node's own address (no NAT on the way).
    assert connect(lab, "db", MGMT.underlay) == (True, f"mgmt-ui {LB_NODE}")
    # A second run (every boot runs it) changes nothing and keeps it working.
    rules = lab.ip("mgmt", "rule", "show").stdout
    assert rules.count("fwmark 0xec2") == 1, rules
    r = replies()
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.ip("mgmt", "rule", "show").stdout == rules
    assert connect(lab, "db", MGMT.underlay) == (True, f"mgmt-ui {LB_NODE}")


def test_what_the_router_forwards_is_still_answered_through_the_overlay(lab, replies):
    assert replies().returncode == 0
    # The internet through the router's Elastic IP (DNAT) and the VPC through its address:
    # both arrive on the overlay device, unmarked, and are answered through the router.
    assert connect(lab, "inet", ELASTIC_IP) == (True, f"mgmt-ui {INTERNET_CLIENT}")
    assert connect(lab, "db", ROUTER.underlay) == (True, f"mgmt-ui {DB_ADDRESS}")
    assert connect(lab, "db", MGMT.overlay) == (True, f"mgmt-ui {DB_ADDRESS}")
    # The management server's own connections (its default route) still leave by the overlay.
    route = lab.ip("mgmt", "route", "get", LB_NODE).stdout
    assert f"via {ROUTER.overlay} dev cloudbr0" in route, route


def test_only_the_load_balancers_group_reaches_8080_on_the_underlay(lab, replies):
    """Answering through the underlay opens nothing: who connects there is the security
    groups' choice. The TroubleMaker on the dedicated subnet is refused by them, and gets
    in once they admit it: the filter, not the routing, is what keeps it out."""
    assert replies().returncode == 0
    assert connect(lab, "tm", MGMT.underlay) == (False, "")
    assert connect(lab, "db", MGMT.underlay) == (True, f"mgmt-ui {LB_NODE}")
    wider = [*MANAGEMENT_GROUPS,
             SimpleNamespace(protocol="tcp", from_port=UI_PORT, to_port=UI_PORT, cidrs=(f"{TROUBLEMAKER.underlay}/32",))]
    lab.run("mgmt", "nft", "-f", "-", input=security_group_filter(wider, "ens5", SG_TABLE))
    assert connect(lab, "tm", MGMT.underlay) == (True, f"mgmt-ui {TROUBLEMAKER.underlay}")
    # The overlay keeps working under the groups (VXLAN and IGMP admitted).
    assert lab.run("host0", "ping", "-c1", "-W2", MGMT.overlay, check=False).returncode == 0


@contextlib.contextmanager
def router_forwards_no_ui(lab: Lab):
    """The router as forwards.env leaves it behind the load balancer: ROUTER_DNAT empty (the
    ui-forward parameter "none", read after overlay.env: userdata/router.sh apply_forwards).
    The router's overlay script re-run with it; the lab's own forward restored afterwards."""
    previous = dict(lab.router_env)
    lab.router_env = {**previous, "ROUTER_DNAT": ""}
    try:
        result = lab.overlay_script(ROUTER)
        assert result.returncode == 0, result.stdout + result.stderr
        yield
    finally:
        lab.router_env = previous
        lab.overlay_script(ROUTER)


def test_behind_the_load_balancer_only_the_load_balancer_reaches_the_ui(lab, replies):
    """No way around the load balancer's TLS: the router's Elastic IP and address on 8080
    lead nowhere, nor does the VPC reach the management server's overlay address through
    the router; the load balancer still reaches the server, and the overlay still works."""
    assert replies().returncode == 0
    with router_forwards_no_ui(lab):
        assert connect(lab, "inet", ELASTIC_IP) == (False, "")
        assert connect(lab, "db", ROUTER.underlay) == (False, "")
        assert connect(lab, "db", MGMT.overlay) == (False, "")
        assert connect(lab, "db", MGMT.underlay) == (True, f"mgmt-ui {LB_NODE}")
        assert lab.run("host0", "ping", "-c1", "-W2", MGMT.overlay, check=False).returncode == 0
    # The forward back (the load balancer turned off): the router's path works again.
    assert connect(lab, "inet", ELASTIC_IP) == (True, f"mgmt-ui {INTERNET_CLIENT}")
