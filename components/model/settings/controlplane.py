"""Settings of the control plane: the overlay router and the CloudStack management server.

Pure module (no Pulumi import). The facts AWS reports of their instance types are checked
with the hosts' (components/model/settings/instancetypes.py).
"""

from __future__ import annotations

from typing import Optional

from components.model import ipplan, rules
from components.model.aws_constraints import IPV4_ADDRESSES_PER_INTERFACE
from components.model.rules import Range
from components.model.settings.base import Key, Problem
from components.model.settings.instancetypes import InstanceFacts, InstanceTypeName

#: The most management servers a stack runs (managementServerCount): each is a member of the
#: overlay's multicast group and a slot of the address plan's management range
#: (components/model/ipplan.py MANAGEMENT_SLOTS).
MAX_MANAGEMENT_SERVERS = 5

KEYS: tuple[Key, ...] = (
    Key("routerInstanceType", "str", "c5n.large", "Overlay router: Nitro (multicast sender), sized for the bandwidth you need.",
        rule=InstanceTypeName("c5n.large")),
    Key("routerCount", "int", 1,
        "Overlay routers: 1, or 2 for an active/standby pair (VRRP) that fails over in seconds (README, \"High availability\").",
        rule=rules.Choice(tuple(range(1, ipplan.MAX_ROUTERS + 1)), "must be 1 (one router) or 2 (an active/standby pair): a VRRP pair has "
                                  "exactly two members")),
    Key("managementInstanceType", "str", "m6i.xlarge", "CloudStack management server: Nitro.",
        rule=InstanceTypeName("m6i.xlarge")),
    Key("managementServerCount", "int", 1,
        "CloudStack management servers (1..5) sharing the database; agents and system VMs fail over between "
        "them. Each is an instance of managementInstanceType.",
        rule=Range(1, MAX_MANAGEMENT_SERVERS, " (management servers)")),
)

#: Private IPv4 addresses on the router's network interface: its own (primary), the console
#: address and the tenants' address, each behind an Elastic IP of its own.
ROUTER_INTERFACE_ADDRESSES = ipplan.ROUTER_SUBNET_ADDRESSES


def router_interface_problems(name: str, facts: Optional[InstanceFacts]) -> list[Problem]:
    """routerInstanceType must hold ROUTER_INTERFACE_ADDRESSES private IPv4 addresses on one
    network interface (EC2 User Guide, "Maximum IP addresses per network interface"; EC2
    refuses more with PrivateIpAddressLimitExceeded, after the interface and its Elastic IPs
    exist). The limit: the offline table's, else what AWS reported (`facts`); neither: no
    problem (nothing known to check)."""
    limit = IPV4_ADDRESSES_PER_INTERFACE.get(name) or (facts.ipv4_addresses_per_interface if facts else None)
    if limit is None or limit >= ROUTER_INTERFACE_ADDRESSES:
        return []
    return [Problem("routerInstanceType", name,
                    f"holds at most {limit} private IPv4 address(es) per network interface, but the router's "
                    f"interface needs {ROUTER_INTERFACE_ADDRESSES} (its own, the console address, the tenants' "
                    "address) (EC2 User Guide, \"Maximum IP addresses per network interface\"). Accepted: a "
                    f"type with at least {ROUTER_INTERFACE_ADDRESSES}, e.g. c5n.large (10) or t3.small (4)")]
