"""Who may connect to the overlay router from outside the overlay (pure; no Pulumi).

The router's source/destination check is off, so its security group filters everything
it FORWARDS into the overlay, not only what it answers itself: this list is the whole of
what the VPC and the internet may open towards the cloud. The Underlay declares it as the
router's security group; the lab renders the very same list as a stateful filter on the
router's outside interface (tests/lab), so what is proven there is what is deployed.

Where a port leads is the router's nftables (userdata/overlay-router.sh): 8080 on the
router's address is the UI/API, a vmForwards port its VM, and 80 and 8080 on the console
address (components/model/consoles.py) the console proxy. A security group rule cannot name one
of the ENI's two addresses, so 8080 is admitted once, for the UI and the console alike,
from the same sources.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Sequence

from components.model.consoles import CONSOLE_PAGE_PORT, CONSOLE_WEBSOCKET_PORT

CLOUDSTACK_UI_PORT = 8080
#: VRRP's IP protocol number (RFC 5798 section 5.1.1.4): the adverts a pair of routers
#: exchange by unicast over their VPC addresses (routerCount 2). The router's group admits
#: it from its own members only, that is from the other router (components/resources/underlay.py).
VRRP_PROTOCOL = 112
#: For protocol icmp, from_port is the ICMP type and to_port the code (EC2 API
#: IpPermission: "the ICMP type ... and code").
ICMP_DESTINATION_UNREACHABLE = 3
ICMP_FRAGMENTATION_NEEDED = 4
assert CONSOLE_WEBSOCKET_PORT == CLOUDSTACK_UI_PORT  # one rule admits both (see above)


@dataclass(frozen=True)
class IngressRule:
    """One security group ingress rule (EC2 IpPermission): protocol "tcp", "udp" or
    "icmp"; ports inclusive (ICMP: type and code); IPv4 CIDRs."""

    protocol: str
    from_port: int
    to_port: int
    cidrs: tuple[str, ...]
    description: str


def router_ingress(vpc_cidr: str, admin_cidrs: Sequence[str],
                   vm_forward_rules: Sequence[tuple[str, int, Sequence[str], str]] = (),
                   ui: bool = True) -> list[IngressRule]:
    """The router's ingress rules:

    - the UI/API (8080) and the console (page 80, websocket 8080) from the VPC, and from
      `admin_cidrs` that lie outside the VPC (those inside are covered by the VPC's rule).
      `ui` False (the UI/API behind the load balancer): the router forwards no UI/API, and
      8080 is admitted for the console's websocket only (the same sources: whoever opens a
      console from the UI);
    - ICMP "fragmentation needed" from anywhere (path MTU discovery; opens no service);
    - one rule per vmForwards entry, (protocol, router port, sources, description), from
      exactly its sources.
    """
    vpc = ipaddress.IPv4Network(vpc_cidr)
    outside = tuple(c for c in admin_cidrs if not ipaddress.IPv4Network(c).subnet_of(vpc))
    port_8080 = "CloudStack UI/API and console websocket" if ui else "VM console websocket (console proxy)"
    rules = [
        IngressRule("tcp", CLOUDSTACK_UI_PORT, CLOUDSTACK_UI_PORT, (vpc_cidr,), f"{port_8080} from the VPC"),
        IngressRule("tcp", CONSOLE_PAGE_PORT, CONSOLE_PAGE_PORT, (vpc_cidr,),
                    "VM console page (console proxy) from the VPC"),
        # Path MTU discovery: the overlay and the VPC carry jumbo frames, the internet
        # gateway 1500 bytes; "fragmentation needed" must reach the router (AWS's
        # advice for PMTUD).
        IngressRule("icmp", ICMP_DESTINATION_UNREACHABLE, ICMP_FRAGMENTATION_NEEDED, ("0.0.0.0/0",),
                    "ICMP fragmentation needed (path MTU discovery)"),
    ]
    for protocol, port, sources, description in vm_forward_rules:
        rules.append(IngressRule(protocol, port, port, tuple(sources), description))
    if outside:
        rules += [
            IngressRule("tcp", CLOUDSTACK_UI_PORT, CLOUDSTACK_UI_PORT, outside, f"{port_8080} from adminCidrs"),
            IngressRule("tcp", CONSOLE_PAGE_PORT, CONSOLE_PAGE_PORT, outside,
                        "VM console page (console proxy) from adminCidrs"),
        ]
    return rules
