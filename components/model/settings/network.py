"""Settings of the network tier: the VPC and its subnets, the VXLAN overlay, the guest
ranges, who may reach the UI/API, the services offered from VMs, and their rules.

Pure module (no Pulumi import). `KEYS` in the order the README and the problems list them;
`CROSS_KEY_RULES` involve several of these keys and run, in this order, after every key's own rule.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from components.model import ipplan
from components.model import linuxdevices
from components.model import rules
from components.model.rules import Cidr, CrossKey, EachPattern, Pattern, Plain, Range
from components.model.settings.base import AWS_ID, Key

if TYPE_CHECKING:
    from components.model.settings import _Collector

#: Transit Gateway carries at most 8500-byte packets and VXLAN adds 50 bytes (components/model/rules.py,
#: shared with the boot scripts' checks).
TGW_MAX_MTU = rules.TGW_MAX_MTU
VXLAN_OVERHEAD = rules.VXLAN_OVERHEAD
MAX_OVERLAY_MTU = rules.MAX_OVERLAY_MTU
MIN_OVERLAY_MTU = rules.MIN_OVERLAY_MTU
MAX_VXLAN_ID = rules.MAX_VXLAN_ID
LOCAL_SCOPE_MULTICAST = ipaddress.IPv4Network("239.255.0.0/16")
ALL_IPV4 = ipaddress.IPv4Network("0.0.0.0/0")

#: Instance metadata and EC2's link-local services: never reachable from the overlay.
LINK_LOCAL = rules.LINK_LOCAL


def _cidrs(c: rules.Check, texts: list, accepted: str = "") -> list[ipaddress.IPv4Network]:
    """The IPv4 CIDRs of `texts`; each one that is not is a problem (`accepted` says more)."""
    parsed = []
    for text in texts:
        try:
            parsed.append(ipaddress.IPv4Network(text))
        except ValueError as exc:
            # ipaddress says which part is wrong: the prefix ("not a valid netmask"), host bits
            # ("has host bits set") or the address itself.
            c.problem(f"{text!r} is not an IPv4 CIDR ({exc}){accepted}")
    return parsed


def two_subnet_cidrs(c: rules.Check, texts: list, why: str) -> tuple[ipaddress.IPv4Network, ...]:
    """Two CIDRs (`why`: what needs subnets in two AZs) that do not overlap; [] is fine."""
    parsed = _cidrs(c, texts, " (host bits zero)")
    if texts and len(texts) != 2:
        c.problem(f"expected exactly two CIDRs ({why})")
    if len(parsed) == 2 and parsed[0].overlaps(parsed[1]):
        c.problem("the two subnets overlap")
    return tuple(parsed)


def _db_subnet_cidrs(c: rules.Check, texts: list) -> tuple[ipaddress.IPv4Network, ...]:
    """Two CIDRs (RDS needs subnets in two AZs) that do not overlap; [] is carved later."""
    return two_subnet_cidrs(c, texts, "RDS needs subnets in two AZs")


def _multicast_group(c: rules.Check, text: str) -> Optional[ipaddress.IPv4Address]:
    """An IPv4 multicast address outside link-local control traffic; outside the local
    scope it may collide with other users of the Transit Gateway (a warning)."""
    try:
        group = ipaddress.IPv4Address(text)
    except ValueError:
        c.problem("expected an IPv4 multicast address (224.0.0.0/4), e.g. 239.255.0.100 in the local scope 239.255.0.0/16")
        return None
    if not group.is_multicast:
        c.problem("is not an IPv4 multicast address (224.0.0.0/4); use one in 239.255.0.0/16")
    elif group in ipaddress.IPv4Network("224.0.0.0/24"):
        c.problem("224.0.0.0/24 is link-local control traffic; use one in 239.255.0.0/16")
    elif group not in LOCAL_SCOPE_MULTICAST:
        c.warn(f"multicastGroup {group} is outside the IPv4 local scope 239.255.0.0/16: "
               "it may collide with other multicast users of the Transit Gateway")
    return group


def _guest_cidr(c: rules.Check, text: str) -> Optional[ipaddress.IPv4Network]:
    """A CIDR inside the private ranges CloudStack accepts for a zone's guests."""
    guest = Cidr("10.1.1.0/24")(c, text)
    if guest and not any(guest.subnet_of(n) for n in ipplan.GUEST_CIDR_RANGES):
        c.problem("CloudStack accepts only private guest CIDRs: inside "
                  + ", ".join(map(str, ipplan.GUEST_CIDR_RANGES)), str(guest))
    return guest


def _guest_vlan_range(c: rules.Check, text: str) -> tuple[int, int]:
    """first-last in 1..4094, whose last VLAN's bridge/device names fit Linux."""
    m = re.match(r"^(\d+)-(\d+)$", text)
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2)) <= 4094):
        c.problem("expected first-last with 1 <= first <= last <= 4094, e.g. 1000-1999")
        return (0, 0)
    vlans = (int(m.group(1)), int(m.group(2)))
    # The KVM agent names a guest VLAN's bridge and device after the overlay port.
    too_long = [n for n in linuxdevices.guest_vlan_devices(vlans[1]) if len(n) > linuxdevices.LINUX_IFNAME_MAX]
    if too_long:
        c.problem(f"the KVM agent would name VLAN {vlans[1]}'s bridge/device {', '.join(too_long)}, longer than "
                  f"Linux's {linuxdevices.LINUX_IFNAME_MAX} characters; expected a last VLAN that fits")
    return vlans


def _admin_cidrs(c: rules.Check, texts: list) -> list[ipaddress.IPv4Network]:
    """Required: the CIDRs that may reach the UI/API."""
    if not texts and not c.has_problem():
        c.problem('must name who may reach the UI/API, e.g. ["203.0.113.7/32"] '
                  '(pulumi config set --path "adminCidrs[0]" <your address>/32)')
    return _cidrs(c, texts, ": give one like 203.0.113.0/24")


def _tenant_vpc_access_cidrs(c: rules.Check, texts: list) -> list[ipaddress.IPv4Network]:
    """CIDRs, never everything (what they must not overlap: tenant_access_keeps_isolation)."""
    nets = []
    for text in texts:
        try:
            net = ipaddress.IPv4Network(text)
        except ValueError:
            c.problem(f"{text!r} is not an IPv4 CIDR (host bits must be zero, e.g. 10.0.8.0/24)")
            continue
        if net.prefixlen == 0:
            c.problem(f"{text!r} is everything; name the ranges tenants may reach")
        else:
            nets.append(net)
    return nets


KEYS: tuple[Key, ...] = (
    Key("vpcCidr", "str", "10.0.0.0/16", "CIDR of the VPC (new, or the existing one named by `vpcId`).",
        rule=Cidr("10.0.0.0/16")),
    Key("cloudstackSubnetCidr", "str", "10.0.0.0/24", "The DEDICATED subnet of every CloudStack instance and the EFS mount target; nothing else may live there.",
        rule=Cidr("10.0.0.0/24", (0, 28), "must be a /28 or larger (EC2 reserves five addresses per subnet)")),
    Key("dbSubnetCidrs", "list", [], "Two subnets (two AZs) for RDS; empty: carved from the top of `vpcCidr`.",
        rule=_db_subnet_cidrs, example='["10.0.250.0/24", "10.0.251.0/24"]'),
    Key("availabilityZone", "str", "", "AZ of the CloudStack subnet (pick one that offers your metal type); empty: the region's first AZ.",
        rule=Plain("any text: choose_availability_zones checks it against the region's AZs at run time")),
    Key("vpcId", "str", "", "Use this existing VPC instead of creating one (then also set `cloudstackSubnetId` and `dbSubnetIds`).",
        rule=Pattern(AWS_ID["vpc"], "a VPC id like vpc-0123456789abcdef0", optional=True)),
    Key("cloudstackSubnetId", "str", "", "Existing dedicated subnet (with `vpcId`); its CIDR must equal `cloudstackSubnetCidr`.",
        rule=Pattern(AWS_ID["subnet"], "a subnet id like subnet-0123456789abcdef0", optional=True)),
    Key("dbSubnetIds", "list", [], "Existing subnets in two AZs for RDS (with `vpcId`).",
        rule=EachPattern(AWS_ID["subnet"], "subnet"),
        example='["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]'),
    Key("routeTableIds", "list", [], "Existing route tables that get the overlay route to the router (with `vpcId`; at least those of the CloudStack and DB subnets).",
        rule=EachPattern(AWS_ID["rtb"], "rtb"), example='["rtb-0123456789abcdef0"]'),
    Key("overlayCidr", "str", "10.100.0.0/16", "The VXLAN overlay (CloudStack's management, pod and public addresses); must not overlap the VPC.",
        rule=Cidr("10.100.0.0/16", (ipplan.MIN_OVERLAY_PREFIX, ipplan.MAX_OVERLAY_PREFIX), f"prefix must be /{ipplan.MIN_OVERLAY_PREFIX}../{ipplan.MAX_OVERLAY_PREFIX}", unusable_outside=True)),
    Key("vxlanId", "int", 100, "VXLAN network identifier of the overlay (1..16777215).",
        rule=Range(1, MAX_VXLAN_ID)),
    Key("multicastGroup", "str", "239.255.0.100", "IPv4 multicast group the VTEPs join (IPv4 local scope 239.255.0.0/16 recommended).",
        rule=_multicast_group),
    Key("overlayMtu", "int", 8450, "MTU of cloudbr0/ethovl0 (1280..8450: Transit Gateway's 8500 minus VXLAN's 50).",
        rule=Range(MIN_OVERLAY_MTU, MAX_OVERLAY_MTU, f" (Transit Gateway's {TGW_MAX_MTU} minus VXLAN's {VXLAN_OVERHEAD}; IPv6 needs at least {MIN_OVERLAY_MTU})")),
    Key("guestCidr", "str", "10.1.1.0/24", "Zone guest CIDR of isolated guest networks (behind CloudStack's virtual routers).",
        rule=_guest_cidr),
    Key("guestVlanRange", "str", "1000-1999", "Guest VLAN IDs (`first-last`, 1..4094) carried inside the overlay.",
        rule=_guest_vlan_range),
    Key("adminCidrs", "list", [], "Who may reach the CloudStack UI/API (TCP 8080) on the router; required, never 0.0.0.0/0 unless `allowPublicAdminAccess`.",
        rule=_admin_cidrs, example='["203.0.113.7/32"]'),
    Key("allowPublicAdminAccess", "bool", False, "Allow 0.0.0.0/0 in `adminCidrs` (the UI/API open to the internet).",
        rule=Plain("true or false")),
    Key("transitGatewayTimeoutMinutes", "int", 30, "Create/update/delete timeout of the Transit Gateway, its VPC attachment and multicast domain (the provider's default is 10 minutes); 10..120.",
        rule=Range(10, 120)),
    Key("vmForwards", "list", [], "Services offered from VMs: `proto:port:target:targetPort@sources`, e.g. `tcp:2222:10.100.128.5:22@203.0.113.0/24`; the router's Elastic IP port `port` goes to a public-range address (a virtual router's port forwarding); sources are CIDRs separated by `,`, or `anywhere`. See Offering services from VMs.",
        rule=CrossKey("vm_forwards_valid", "a target must be in the public range of overlayCidr"),
        example='["tcp:2222:10.100.128.5:22@203.0.113.0/24"]'),
    Key("tenantVpcAccessCidrs", "list", [], "Parts of the VPC (or networks reachable from it) that tenant VMs may reach through the router besides DNS and the internet, e.g. during a migration; never the CloudStack or database subnets. See Isolation.",
        rule=_tenant_vpc_access_cidrs, example='["10.0.64.0/24"]'),
    # Tenants' DNS (the router's resolver, userdata/overlay-router.sh TENANT_DNS): false, it
    # recurses from the root itself, so tenants never see the VPC's private hosted zones or
    # its own names; true, it forwards to the VPC resolver, which answers them.
    Key("tenantPrivateDns", "bool", False, "Tenant VMs' DNS answers include the VPC's private hosted zones and names (the router's resolver forwards to the VPC resolver); false: it resolves from the internet's root itself. See Isolation.",
        rule=Plain("true or false")),
)


@dataclass(frozen=True)
class VmForward:
    """One service offered from a VM: `protocol` `port` on the router's Elastic IP goes to
    `target`:`target_port` (a public-range address, e.g. a virtual router's port
    forwarding), admitted from `sources` only."""

    protocol: str  # tcp | udp
    port: int
    target: ipaddress.IPv4Address
    target_port: int
    sources: tuple[ipaddress.IPv4Network, ...]

    @property
    def dnat(self) -> str:
        """The router's form (overlay-network.sh VM_FORWARDS / ROUTER_DNAT entry)."""
        return f"{self.protocol}:{self.port}:{self.target}:{self.target_port}"


#: Router ports never offered to VMs: the UI/API (8080) and the console page (80). Consoles
#: live on the console address, but a security group rule cannot name one of the router's two
#: addresses (components/model/routeraccess.py): a forward's sources on 80 or 8080 would reach the
#: console too.
RESERVED_FORWARD_PORTS = (80, 8080)
_FORWARD = re.compile(rf"^{rules.DNAT}@(.+)$")


def _forward_sources(text: str, bad: Callable[[str], None]) -> list[ipaddress.IPv4Network]:
    """The CIDRs of a forward's sources; [] after reporting the first bad one."""
    sources = []
    for item in text.split(","):
        try:
            net = ipaddress.IPv4Network(item.strip())
        except ValueError:
            bad(f"source {item!r} is not an IPv4 CIDR (host bits zero)")
            return []
        if net.prefixlen == 0:
            bad("0.0.0.0/0 opens the service to the internet: write 'anywhere' to mean it")
            return []
        sources.append(net)
    return sources


def parse_vm_forwards(c: "_Collector", overlay: Optional[ipaddress.IPv4Network]) -> list[VmForward]:
    texts = c.given["vmForwards"]
    forwards: list[VmForward] = []
    public = ipplan.address_classes(overlay).public if overlay is not None else None
    seen: dict[tuple[str, int], str] = {}
    for text in texts:
        def bad(message: str) -> None:
            c.problem("vmForwards", texts, f"entry {text!r}: {message}")

        m = _FORWARD.match(text)
        if not m:
            bad("expected proto:port:target:targetPort@sources (proto tcp or udp; sources: CIDRs separated by"
                " ',' or 'anywhere'), e.g. tcp:2222:10.100.128.5:22@203.0.113.0/24")
            continue
        protocol, port, target_text, target_port, source_text = m.groups()
        port, target_port = int(port), int(target_port)
        if not (1 <= port <= 65535 and 1 <= target_port <= 65535):
            bad("ports must be 1..65535")
            continue
        if port in RESERVED_FORWARD_PORTS:
            bad(f"port {port} is reserved on the router (the UI/API and the console proxy:"
                f" {', '.join(map(str, RESERVED_FORWARD_PORTS))})")
            continue
        if (protocol, port) in seen:
            bad(f"{protocol} port {port} is already forwarded by {seen[(protocol, port)]!r}")
            continue
        try:
            target = ipaddress.IPv4Address(target_text)
        except ValueError:
            bad(f"{target_text!r} is not an IPv4 address")
            continue
        if public is not None and target not in public:
            bad(f"the target must be in the public range {public} (a virtual router's public address);"
                " infrastructure and system addresses are never forwarded")
            continue
        sources = [ALL_IPV4] if source_text == "anywhere" else _forward_sources(source_text, bad)
        if not sources:
            continue
        seen[(protocol, port)] = text
        forwards.append(VmForward(protocol, port, target, target_port, tuple(sources)))
    return forwards



# --------------------------------------------------------------------------- cross-key rules
# Each reads the per-key results (`c.values`, None where unusable) and reports on one rule
# that involves several keys of this tier.


def _unparsed_network(text: str) -> Optional[ipaddress.IPv4Network]:
    try:
        return ipaddress.IPv4Network(text)
    except ValueError:
        return None


def subnet_inside_vpc(c: _Collector) -> None:
    """The CloudStack subnet is a subnet of the VPC."""
    vpc, subnet = c.values["vpcCidr"], c.values["cloudstackSubnetCidr"]
    if vpc and subnet and not subnet.subnet_of(vpc):
        c.problem("cloudstackSubnetCidr", str(subnet), f"must lie inside vpcCidr {vpc}")


def overlay_outside_vpc(c: _Collector) -> None:
    """The VPC routes the overlay to the router, so the two must not overlap (checked even
    when the overlay's prefix is refused, so both problems come in one round)."""
    vpc, overlay = c.values["vpcCidr"], c.values["overlayCidr"] or _unparsed_network(c.given["overlayCidr"])
    if vpc and overlay and overlay.overlaps(vpc):
        c.problem("overlayCidr", str(overlay), f"must not overlap vpcCidr {vpc}: the VPC routes the overlay to the router")


def guest_cidr_apart(c: _Collector) -> None:
    """Guest networks are behind virtual routers on the overlay: apart from the VPC and the overlay."""
    guest = c.values["guestCidr"]
    if guest:
        for other_name in ("vpcCidr", "overlayCidr"):
            other = c.values[other_name]
            if other and guest.overlaps(other):
                c.problem("guestCidr", str(guest), f"must not overlap {other_name} {other}")


def db_subnets_in_vpc(c: _Collector) -> None:
    """The database subnets lie in the VPC, off the dedicated CloudStack subnet; when not
    given, they are carved from the top of the VPC."""
    vpc, subnet = c.values["vpcCidr"], c.values["cloudstackSubnetCidr"]
    if c.given["dbSubnetCidrs"]:
        for net in c.values["dbSubnetCidrs"]:
            if vpc and not net.subnet_of(vpc):
                c.problem("dbSubnetCidrs", str(net), f"must lie inside vpcCidr {vpc}")
            if subnet and net.overlaps(subnet):
                c.problem("dbSubnetCidrs", str(net), f"must not overlap the dedicated cloudstackSubnetCidr {subnet}")
    elif vpc and subnet and subnet.subnet_of(vpc):
        try:
            c.values["dbSubnetCidrs"] = ipplan.carve_db_subnets(str(vpc), [str(subnet)])
        except ValueError as exc:
            c.problem("dbSubnetCidrs", [], f"cannot be derived: {exc}; set two CIDRs explicitly")


def existing_vpc_ids_together(c: _Collector) -> None:
    """An existing VPC comes with its subnets and route tables: all ids or none."""
    vpc_id, subnet_id = c.values["vpcId"], c.values["cloudstackSubnetId"]
    db_subnet_ids, route_table_ids = c.values["dbSubnetIds"], c.values["routeTableIds"]
    if vpc_id:
        if not subnet_id:
            c.problem("cloudstackSubnetId", "", "required with vpcId: the existing dedicated CloudStack subnet")
        if len(db_subnet_ids) != 2:
            c.problem("dbSubnetIds", db_subnet_ids, "required with vpcId: two existing subnets in two AZs")
        if not route_table_ids:
            c.problem("routeTableIds", route_table_ids,
                      "required with vpcId: at least the route tables of the CloudStack and database subnets, "
                      "which must send the overlay CIDR to the router (else replies to overlay addresses are lost)")
    elif subnet_id or db_subnet_ids or route_table_ids:
        c.problem("vpcId", "", "required when cloudstackSubnetId, dbSubnetIds or routeTableIds is set")


def public_admin_access_consented(c: _Collector) -> None:
    """0.0.0.0/0 in adminCidrs opens the UI/API to the internet: only with allowPublicAdminAccess."""
    for net in c.values["adminCidrs"]:
        if net == ALL_IPV4 and not c.values["allowPublicAdminAccess"]:
            c.problem("adminCidrs", c.given["adminCidrs"],
                      "0.0.0.0/0 opens the UI/API to the internet: set allowPublicAdminAccess to true to mean it")


def tenant_access_keeps_isolation(c: _Collector) -> None:
    """The isolation protects exactly these: opening them to tenants would undo it."""
    texts = c.given["tenantVpcAccessCidrs"]
    protected = [("cloudstackSubnetCidr (EFS and the CloudStack instances)", c.values["cloudstackSubnetCidr"]),
                 *(("dbSubnetCidrs (the database)", n) for n in c.values["dbSubnetCidrs"]),
                 ("overlayCidr", c.values["overlayCidr"]), ("169.254.0.0/16 (instance metadata)", LINK_LOCAL)]
    kept = []
    for text in texts:
        net = _unparsed_network(text)
        if net is None or net.prefixlen == 0:
            continue  # refused by the key's own rule
        clashes = [f"{name} {other}" for name, other in protected if other is not None and net.overlaps(other)]
        if clashes:
            c.problem("tenantVpcAccessCidrs", texts,
                      f"{text!r} overlaps {', '.join(clashes)}, which tenants must never reach")
        else:
            kept.append(net)
    c.values["tenantVpcAccessCidrs"] = kept


def vm_forwards_valid(c: _Collector) -> None:
    """Each forward's target is in the overlay's public range (see parse_vm_forwards)."""
    c.values["vmForwards"] = parse_vm_forwards(c, c.values["overlayCidr"])



#: This tier's rules that involve several keys, in the order they run.
CROSS_KEY_RULES: tuple[Callable[["_Collector"], None], ...] = (
    subnet_inside_vpc,
    overlay_outside_vpc,
    guest_cidr_apart,
    db_subnets_in_vpc,
    existing_vpc_ids_together,
    public_admin_access_consented,
    tenant_access_keeps_isolation,
    vm_forwards_valid,
)
