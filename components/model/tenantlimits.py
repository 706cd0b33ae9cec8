"""What tenants and system VMs may take of the overlay router: their DNS and connection budgets.

Pure module (no Pulumi import). The router enforces these figures in its nftables table
(userdata/overlay-router.sh, which holds the same numbers; tests/userdata/test_tenant_limits.py
compares them); the offline plan and the README show them.

Why: every DNS query of the overlay leaves through the router's one network interface,
and the VPC resolver answers at most 1024 packets a second from one interface ("Each
EC2 instance limits the number of packets that can be sent to the Amazon DNS server to
a maximum of 1024 packets per second per network interface", Amazon VPC User Guide,
"Amazon DNS server"). Without budgets one tenant could take all of it, the management
server's and the KVM hosts' included. The router's conntrack table and NAT ports are
shared the same way.

Who is who comes from the IP plan (components/model/ipplan.AddressClasses): the
infrastructure is never limited; system VMs (the pod's system range) share one budget;
every other overlay address is a tenant (a virtual router's public NIC carries the
queries and connections of its whole guest network) and has a budget of its own, and
all tenants together one more.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Sequence

#: The VPC resolver's limit per network interface, packets a second (see above).
VPC_RESOLVER_PACKETS_PER_SECOND = 1024

#: DNS packets a second to the VPC resolver, per tenant address (and the burst it may
#: save up), and for all tenants together.
TENANT_DNS_RATE = 50
TENANT_DNS_BURST = 100
TENANT_DNS_TOTAL = 500
#: DNS packets a second for all system VMs together (console proxies, secondary storage
#: VMs: a handful), and their burst.
SYSTEM_DNS_TOTAL = 100
SYSTEM_DNS_BURST = 200

#: New connections through the router per tenant address: a second (burst), and at once.
TENANT_NEW_RATE = 200
TENANT_NEW_BURST = 400
TENANT_CONNECTIONS = 4096


def infrastructure_dns_reserve() -> int:
    """Packets a second of the VPC resolver's budget that tenants and system VMs never take
    (the management servers', the KVM hosts' and the router's own queries)."""
    return VPC_RESOLVER_PACKETS_PER_SECOND - TENANT_DNS_TOTAL - SYSTEM_DNS_TOTAL


def summary() -> list[str]:
    """One line per budget, as the plan prints them."""
    return [
        f"DNS to the VPC resolver ({VPC_RESOLVER_PACKETS_PER_SECOND} packets/s per network interface): "
        f"{TENANT_DNS_RATE}/s per tenant address (burst {TENANT_DNS_BURST}), {TENANT_DNS_TOTAL}/s all tenants, "
        f"{SYSTEM_DNS_TOTAL}/s all system VMs (burst {SYSTEM_DNS_BURST}); "
        f"{infrastructure_dns_reserve()}/s kept for the infrastructure, which is not limited",
        f"new connections per tenant address: {TENANT_NEW_RATE}/s (burst {TENANT_NEW_BURST}), "
        f"{TENANT_CONNECTIONS} at once; system VMs and the infrastructure are not limited",
    ]


#: The services a VPC can reach through gateway endpoints (Amazon VPC User Guide,
#: "Gateway endpoints": Amazon S3 and DynamoDB). A gateway endpoint on the dedicated
#: subnet's route table sends the service's public prefixes into the endpoint, where a
#: request carries aws:SourceVpce and aws:SourceVpc: bucket and table policies written for
#: the VPC would admit tenants. Tenants are refused the services' regional prefix lists in an
#: existing VPC, whether or not an endpoint is there today (one may be added later).
GATEWAY_ENDPOINT_SERVICES = ("s3", "dynamodb")

#: Space the router refuses tenants anyway (overlay-router.sh not_internet, the VPC aside).
_NOT_INTERNET = tuple(ipaddress.IPv4Network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"))


def gateway_endpoint_prefix_list_names(region: str, partition: str) -> list[str]:
    """The AWS-managed prefix lists of GATEWAY_ENDPOINT_SERVICES in `region`, by name
    (DescribePrefixLists: com.amazonaws.<region>.<service>; cn.com.amazonaws.<region>.<service>
    in the China partition)."""
    prefix = "cn.com.amazonaws" if partition == "aws-cn" else "com.amazonaws"
    return [f"{prefix}.{region}.{service}" for service in GATEWAY_ENDPOINT_SERVICES]


def refused_to_tenants(prefix_list_cidrs: Iterable[str], routes: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The public destinations the router refuses tenants (overlay-network.sh TENANT_REFUSED),
    sorted, without repeats or what private space already covers.

    prefix_list_cidrs: the gateway-endpoint services' prefixes. routes: (destination CIDR,
    target id) of the dedicated subnet's route table: a destination the VPC sends anywhere
    but the internet gateway (igw-) or itself (local), other than the default route, leads to
    a VPN, Direct Connect, a peered VPC or a transit gateway, whose far end trusts the VPC's
    addresses. tenantVpcAccessCidrs still opens any of them (the router admits those first)."""
    found = {ipaddress.IPv4Network(c) for c in prefix_list_cidrs}
    for destination, target in routes:
        if not destination or target == "local" or target.startswith("igw-"):
            continue
        net = ipaddress.IPv4Network(destination)
        if net.prefixlen:
            found.add(net)
    public = [n for n in found if not any(n.subnet_of(p) for p in _NOT_INTERNET)]
    return tuple(str(n) for n in ipaddress.collapse_addresses(public))
