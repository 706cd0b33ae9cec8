"""The overlay IP plan: every address the deployment uses, derived from the settings.

Pure module (no Pulumi import): the program, the offline plan command, the boot
scripts and the CloudStack registration all read their addresses from here, so
there is one place that decides where each address goes.

Layout of the overlay CIDR, split into four equal blocks:

    block 0  infrastructure   .0 network, +1 router (overlay gateway),
                              +2..+9 management server slots, +10.. KVM hosts,
                              the block's last two addresses: the router pair's own
                              addresses (router 0, router 1; see router_pair_address)
    block 1  pod reserved system range (system VMs' management NICs)
    block 2  public range (CloudStack virtual routers' public NICs)
    block 3  +1..+8 system VMs' public range (SYSTEM_PUBLIC_RANGE_SIZE addresses: the
             console proxy's and the secondary storage VM's public NICs, a public IP
             range registered with forsystemvms=true); the rest spare, kept free for a
             second pod or bigger ranges later

Host i always gets infrastructure base + 10 + i, whatever the host count: adding
or removing hosts above i never moves host i (its KVM agent, libvirt and
CloudStack's host record all know it by that address).

Address classes (who may reach what; see `AddressClasses`): the overlay is not
one trust zone. Block 0 is infrastructure (router, management servers, KVM
hosts), the pod's reserved system range holds system VMs, and every other
overlay address (the public range above all: tenants' virtual routers) is a
tenant. The classes are whole slot ranges, not the addresses in use, so the
firewalls written at boot stay right when hosts come and go.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Sequence

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network

#: Overlay prefixes the plan supports: a /24 leaves 52 host slots; wider than /8
#: is meaningless inside RFC 1918 space.
MIN_OVERLAY_PREFIX = 8
MAX_OVERLAY_PREFIX = 24

ROUTER_OFFSET = 1
MANAGEMENT_OFFSET = 2
MANAGEMENT_SLOTS = 8
FIRST_HOST_OFFSET = MANAGEMENT_OFFSET + MANAGEMENT_SLOTS
#: The infrastructure block's last addresses: one per router of a router pair, each
#: router's own overlay address while the gateway (+1) moves between them as a VRRP
#: virtual address. Reserved whether or not a stack runs two routers, so that going
#: from one router to two never takes a KVM host's address.
ROUTER_PAIR_SLOTS = 2

#: CloudStack stores one row per address of a pod or public range: keep the
#: ranges useful but bounded, so adding them takes seconds, not minutes.
SYSTEM_RANGE_MAX = 250
PUBLIC_RANGE_MAX = 1000
#: Addresses of the system VMs' public range (block 3's first): a console proxy and a
#: secondary storage VM per zone, with room for their replacements while the old ones are
#: expunged. CloudStack gives system VMs these first and tenants never
#: (createVlanIpRange forsystemvms=true; IpAddressManagerImpl.listAvailablePublicIps), so
#: the console proxy's public IP, which the router forwards the console address to, never
#: lands on a tenant's virtual router.
SYSTEM_PUBLIC_RANGE_SIZE = 8

#: A Transit Gateway multicast group holds at most 100 members; every VTEP
#: (router, management servers, hosts) joins the overlay's group.
MAX_MULTICAST_MEMBERS = 100

#: EC2 reserves the VPC's base + 2 for its DNS resolver.
VPC_RESOLVER_OFFSET = 2

#: EC2 reserves five addresses of every subnet: the network address, base + 1
#: (VPC router), + 2 (DNS), + 3 (future use) and the last one (AWS VPC user guide,
#: "Subnet CIDR blocks").
SUBNET_RESERVED_ADDRESSES = 5
#: What else takes an address in the dedicated subnet besides the instances' own: the
#: EFS mount target's ENI, the Transit Gateway VPC attachment's ENI and the router's
#: second and third private addresses (the console address, components/model/consoles.py, and the
#: tenants' address, components/resources/router.py).
SUBNET_OTHER_ADDRESSES = ("EFS mount target", "Transit Gateway attachment", "router console address",
                          "router tenants' address")
#: What a second router (routerCount 2) takes in the dedicated subnet: its own interface's
#: primary, console and tenants' addresses (the console and tenants' Elastic IPs move to the
#: last two when it takes over; components/resources/router.py).
ROUTER_SUBNET_ADDRESSES = 3
#: Routers the plan supports: one, or an active/standby pair (VRRP has exactly two here).
MAX_ROUTERS = 2


#: Guest CIDRs CloudStack accepts (NetUtils.validateGuestCidr: RFC 1918 and RFC 6598);
#: the settings and the registration spec both check guestCidr against them.
GUEST_CIDR_RANGES = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                             "100.64.0.0/10"))


@dataclass(frozen=True)
class AddressRange:
    """An inclusive range of addresses, as CloudStack's startip/endip take them."""

    start: IPv4Address
    end: IPv4Address

    @property
    def size(self) -> int:
        return int(self.end) - int(self.start) + 1

    def __contains__(self, address: object) -> bool:
        return isinstance(address, IPv4Address) and self.start <= address <= self.end

    def overlaps(self, other: "AddressRange") -> bool:
        return self.start <= other.end and other.start <= self.end

    @classmethod
    def parse(cls, text: str) -> "AddressRange":
        """"first-last", as str() writes it. Raises ValueError on anything else (first after last too)."""
        first, sep, last = str(text).partition("-")
        if not sep:
            raise ValueError(f"{text!r} is not first-last")
        span = cls(IPv4Address(first), IPv4Address(last))
        if span.start > span.end:
            raise ValueError(f"{text!r}: the first address is after the last")
        return span

    def cidrs(self) -> list[IPv4Network]:
        """The fewest CIDRs covering exactly this range (security group rules take CIDRs)."""
        return list(ipaddress.summarize_address_range(self.start, self.end))

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


@dataclass(frozen=True)
class VlanRange:
    """Guest VLAN IDs (802.1Q tags carried inside the VXLAN overlay)."""

    first: int
    last: int

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


@dataclass(frozen=True)
class IpPlan:
    overlay: IPv4Network
    router: IPv4Address
    management_servers: tuple[IPv4Address, ...]
    hosts: tuple[IPv4Address, ...]
    host_capacity: int
    system_range: AddressRange
    public_range: AddressRange
    guest_vlans: VlanRange
    guest_cidr: IPv4Network
    zone_dns: IPv4Address
    vpc: IPv4Network
    #: the system VMs' public range: block 3's network address + 1 .. + SYSTEM_PUBLIC_RANGE_SIZE
    system_public_range: AddressRange
    #: Overlay routers (routerCount): with two, `router` is their virtual (VRRP) address,
    #: held by whichever is active.
    router_count: int = 1

    @property
    def classes(self) -> AddressClasses:
        return address_classes(self.overlay)

    @property
    def gateway(self) -> IPv4Address:
        """The default gateway CloudStack is given for pods and public ranges."""
        return self.router

    @property
    def netmask(self) -> IPv4Address:
        return self.overlay.netmask

    def overlay_interface(self, address: IPv4Address) -> str:
        """`address/prefix`, as the overlay script puts it on cloudbr0."""
        return f"{address}/{self.overlay.prefixlen}"

    @property
    def multicast_members(self) -> int:
        return self.router_count + len(self.management_servers) + len(self.hosts)

    def all_named_addresses(self) -> list[tuple[str, IPv4Address]]:
        named = [("router", self.router)]
        named += [(f"management-{i}", a) for i, a in enumerate(self.management_servers)]
        named += [(f"host-{i}", a) for i, a in enumerate(self.hosts)]
        return named


def overlay_blocks(overlay: IPv4Network) -> list[IPv4Network]:
    return list(overlay.subnets(prefixlen_diff=2))


#: Address classes, in the order `AddressClasses.classify` tests them.
INFRASTRUCTURE = "infrastructure"
SYSTEM = "system"
TENANT = "tenant"
OUTSIDE = "outside"


@dataclass(frozen=True)
class AddressClasses:
    """Who is who on the overlay, for the firewalls of the router, management
    servers and hosts (all rendered from this, nowhere else).

    infrastructure  the overlay's block 0: router, every management server slot,
                    every host slot
    management      the management server slots (base + 2 .. base + 9)
    hosts           the KVM host slots (base + 10 .. the block's end minus the two
                    router pair addresses, which are infrastructure like the router)
    system          the pod's reserved system range (system VMs' management NICs)
    public          the public range (CloudStack virtual routers' public NICs): tenants
    Anything else on the overlay is a tenant too.
    """

    overlay: IPv4Network
    infrastructure: IPv4Network
    router: IPv4Address
    management: AddressRange
    hosts: AddressRange
    system: AddressRange
    public: AddressRange

    def classify(self, address: IPv4Address) -> str:
        """INFRASTRUCTURE, SYSTEM, TENANT (any other overlay address) or OUTSIDE."""
        if address not in self.overlay:
            return OUTSIDE
        if address in self.infrastructure:
            return INFRASTRUCTURE
        if address in self.system:
            return SYSTEM
        return TENANT


def address_classes(overlay: IPv4Network) -> AddressClasses:
    """The address classes of an overlay (see the module docstring for the layout)."""
    infra, system, public, _spare = overlay_blocks(overlay)
    base = infra.network_address
    return AddressClasses(
        overlay=overlay,
        infrastructure=infra,
        router=base + ROUTER_OFFSET,
        management=AddressRange(base + MANAGEMENT_OFFSET, base + MANAGEMENT_OFFSET + MANAGEMENT_SLOTS - 1),
        hosts=AddressRange(base + FIRST_HOST_OFFSET, infra.broadcast_address - ROUTER_PAIR_SLOTS),
        system=_bounded_range(system, SYSTEM_RANGE_MAX),
        public=_bounded_range(public, PUBLIC_RANGE_MAX),
    )


def host_capacity(overlay: IPv4Network) -> int:
    """How many KVM hosts fit in the overlay's infrastructure block (its router pair
    addresses, ROUTER_PAIR_SLOTS at its end, excluded)."""
    return overlay_blocks(overlay)[0].num_addresses - FIRST_HOST_OFFSET - ROUTER_PAIR_SLOTS


def router_pair_address(overlay: IPv4Network, index: int) -> IPv4Address:
    """The own overlay address of router `index` (0 or 1) of a router pair: the
    infrastructure block's second-to-last (router 0) or last address (router 1),
    e.g. 10.100.63.254 and 10.100.63.255 for 10.100.0.0/16. The pair's gateway, which
    members and CloudStack's pod and public ranges use, stays base + 1 (the `router`
    address): a VRRP virtual address held by the active router. No host slot and no
    CloudStack range (blocks 1-3) ever holds these two. Raises ValueError for another index."""
    if index not in range(ROUTER_PAIR_SLOTS):
        raise ValueError(f"router pair index {index!r} is not accepted; expected 0..{ROUTER_PAIR_SLOTS - 1}")
    return overlay_blocks(overlay)[0].broadcast_address - (ROUTER_PAIR_SLOTS - 1) + index


def subnet_host_capacity(subnet: IPv4Network, management_count: int = 1, router_count: int = 1) -> int:
    """How many KVM hosts the dedicated subnet holds: its usable addresses (all but EC2's
    five) minus the router, the management servers and SUBNET_OTHER_ADDRESSES (the EFS
    mount target, the Transit Gateway attachment, the console and tenants' addresses), and
    ROUTER_SUBNET_ADDRESSES for a second router. Can be negative for a subnet too small for
    the fixed members."""
    usable = subnet.num_addresses - SUBNET_RESERVED_ADDRESSES
    return (usable - 1 - management_count - len(SUBNET_OTHER_ADDRESSES)
            - (router_count - 1) * ROUTER_SUBNET_ADDRESSES)


@dataclass(frozen=True)
class HostLimit:
    """The most KVM hosts a stack can have, and which limit decides it."""

    hosts: int
    overlay: int
    multicast: int
    subnet: int

    @property
    def deciding(self) -> str:
        by = {"overlay": self.overlay, "multicast group": self.multicast, "dedicated subnet": self.subnet}
        return min(by, key=by.get)


def host_limit(overlay: IPv4Network, subnet: IPv4Network, management_count: int = 1,
               router_count: int = 1) -> HostLimit:
    """The effective host limit: the smallest of the overlay's host slots, the Transit
    Gateway multicast group's 100 members (router and management servers included) and
    the dedicated subnet's addresses. The one rule the settings check and the plan shows."""
    by_overlay = host_capacity(overlay)
    by_multicast = MAX_MULTICAST_MEMBERS - router_count - management_count
    by_subnet = subnet_host_capacity(subnet, management_count, router_count)
    return HostLimit(min(by_overlay, by_multicast, by_subnet), by_overlay, by_multicast, by_subnet)


def host_address(overlay: IPv4Network, index: int) -> IPv4Address:
    """The stable overlay address of host `index` (0-based)."""
    if index < 0 or index >= host_capacity(overlay):
        raise ValueError(
            f"host index {index} is outside the overlay's host slots 0..{host_capacity(overlay) - 1}"
        )
    return overlay.network_address + FIRST_HOST_OFFSET + index


def _bounded_range(block: IPv4Network, limit: int) -> AddressRange:
    # Skip the block's first and last address: inside a /16 overlay they are
    # valid hosts, but .0/.255-looking addresses confuse people and some guests.
    start = int(block.network_address) + 1
    end = min(int(block.broadcast_address) - 1, start + limit - 1)
    return AddressRange(IPv4Address(start), IPv4Address(end))


def system_public_range(overlay: IPv4Network) -> AddressRange:
    """The system VMs' public range of an overlay: the first SYSTEM_PUBLIC_RANGE_SIZE addresses
    after block 3's network address (10.100.192.1-10.100.192.8 for 10.100.0.0/16)."""
    start = overlay_blocks(overlay)[3].network_address + 1
    return AddressRange(start, start + SYSTEM_PUBLIC_RANGE_SIZE - 1)


def vpc_resolver(vpc: IPv4Network) -> IPv4Address:
    return vpc.network_address + VPC_RESOLVER_OFFSET


def build_plan(
    *,
    overlay_cidr: str,
    vpc_cidr: str,
    host_count: int,
    guest_cidr: str,
    guest_vlans: tuple[int, int],
    management_count: int = 1,
    router_count: int = 1,
) -> IpPlan:
    """Compute the plan. Raises ValueError for inputs the settings should have refused."""
    overlay = ipaddress.IPv4Network(overlay_cidr)
    vpc = ipaddress.IPv4Network(vpc_cidr)
    if not MIN_OVERLAY_PREFIX <= overlay.prefixlen <= MAX_OVERLAY_PREFIX:
        raise ValueError(
            f"overlay {overlay} must have a prefix between /{MIN_OVERLAY_PREFIX} and /{MAX_OVERLAY_PREFIX}"
        )
    if not 1 <= management_count <= MANAGEMENT_SLOTS:
        raise ValueError(f"management_count {management_count} must be 1..{MANAGEMENT_SLOTS}")
    if not 1 <= router_count <= MAX_ROUTERS:
        raise ValueError(f"router_count {router_count} must be 1..{MAX_ROUTERS}")
    capacity = host_capacity(overlay)
    if not 0 <= host_count <= capacity:
        raise ValueError(f"host_count {host_count} must be 0..{capacity} for overlay {overlay}")

    classes = address_classes(overlay)
    return IpPlan(
        overlay=overlay,
        router=classes.router,
        management_servers=tuple(classes.management.start + i for i in range(management_count)),
        hosts=tuple(host_address(overlay, i) for i in range(host_count)),
        host_capacity=capacity,
        system_range=classes.system,
        public_range=classes.public,
        guest_vlans=VlanRange(*guest_vlans),
        guest_cidr=ipaddress.IPv4Network(guest_cidr),
        zone_dns=vpc_resolver(vpc),
        vpc=vpc,
        system_public_range=system_public_range(overlay),
        router_count=router_count,
    )


def carve_db_subnets(vpc_cidr: str, taken: Sequence[str], count: int = 2) -> tuple[IPv4Network, ...]:
    """Pick `count` subnets for the database inside the VPC, clear of `taken`.

    Sized like the usual /24 in a /16 VPC (never smaller than a /28, RDS's floor),
    taken from the top of the VPC so the bottom stays free for the user's own subnets.
    """
    vpc = ipaddress.IPv4Network(vpc_cidr)
    prefix = min(max(vpc.prefixlen + 2, 24), 28)
    if prefix <= vpc.prefixlen:
        raise ValueError(f"VPC {vpc} is too small for database subnets")
    return carve_subnets(vpc, taken, count, prefix, "database")


#: The load balancer's subnets: ELB needs "at least a /27 bitmask and at least 8 free IP
#: addresses" in each (Elastic Load Balancing User Guide, "Subnets for your load balancer");
#: a /26 leaves it room to scale out, a /27 is taken where a /26 does not fit.
LOAD_BALANCER_SUBNET_PREFIXES = (26, 27)


def carve_load_balancer_subnets(vpc_cidr: str, taken: Sequence[str]) -> tuple[IPv4Network, ...]:
    """Two subnets (two AZs) for the load balancer inside the VPC, clear of `taken` (the
    dedicated and database subnets), from the top of the VPC like the database's; the
    same inputs always give the same subnets. Raises ValueError when none fit."""
    vpc = ipaddress.IPv4Network(vpc_cidr)
    for prefix in LOAD_BALANCER_SUBNET_PREFIXES:
        if prefix > vpc.prefixlen:
            try:
                return carve_subnets(vpc, taken, 2, prefix, "load balancer")
            except ValueError:
                continue
    raise ValueError(f"VPC {vpc} has no room for two /{LOAD_BALANCER_SUBNET_PREFIXES[-1]} load balancer subnets "
                     f"beside {', '.join(taken)}")


def carve_subnets(vpc: IPv4Network, taken: Sequence[str], count: int, prefix: int,
                  what: str) -> tuple[IPv4Network, ...]:
    """`count` /`prefix` subnets inside `vpc`, clear of `taken`, highest first (returned sorted)."""
    taken_networks = [ipaddress.IPv4Network(t) for t in taken]
    chosen: list[IPv4Network] = []
    size = 2 ** (32 - prefix)
    ceiling = int(vpc.broadcast_address) + 1  # candidates end below this
    while len(chosen) < count and ceiling - size >= int(vpc.network_address):
        candidate = ipaddress.IPv4Network((ceiling - size, prefix))
        blocking = [t for t in taken_networks if candidate.overlaps(t)]
        if blocking:
            # Jump below the lowest blocking network, aligned to the candidate size.
            ceiling = min(int(t.network_address) for t in blocking) // size * size
            continue
        chosen.append(candidate)
        ceiling -= size
    if len(chosen) == count:
        return tuple(sorted(chosen))
    raise ValueError(f"VPC {vpc} has no room for {count} /{prefix} {what} subnets beside {', '.join(map(str, taken))}")
