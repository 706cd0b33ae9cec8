"""The overlay network every role's user data sets up: the settings of
userdata/overlay-network.sh (OverlayConfig), their rules, and the overlay.env file.

The router forwards, filters and routes the overlay; the members (management server,
KVM hosts) reach everything beyond it through the router.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Optional

from components.boot.checks import (
    UserDataError, check_choice, check_int, check_match, check_str, ip_value)
from components.model import ipplan
from components.model import rules

_DEV = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_DNAT = re.compile(rf"^{rules.DNAT}$")


@dataclass(frozen=True)
class OverlayConfig:
    """Settings of userdata/overlay-network.sh (its OVERLAY_*/VXLAN_* variables)."""
    role: str                       # "router" | "member"
    vxlan_id: int                   # 1..16777215
    vxlan_group: str                # IPv4 multicast group, e.g. "239.255.0.100"
    overlay_address: str            # this instance's "a.b.c.d/prefix" on cloudbr0
    overlay_mtu: int                # 1280..8450
    vpc_cidr: str                   # the VPC's IPv4 CIDR
    overlay_gateway: Optional[str] = None   # members: the router's overlay address
    vxlan_port: int = 4789
    router_dnat: tuple[str, ...] = ()       # router: "proto:port:target_ip:target_port"
    underlay_dev: Optional[str] = None      # default: the default-route device
    #: Router (required there): the subnet where system VMs may reach NFS, i.e. the
    #: dedicated CloudStack subnet holding the EFS mount target, e.g. "10.0.0.0/24".
    storage_cidr: Optional[str] = None
    #: Router: IPv4 CIDRs tenants may reach besides DNS and the internet (tenantVpcAccessCidrs).
    tenant_vpc_access: tuple[str, ...] = ()
    #: Router: its console address, the second private IPv4 of its ENI (inside vpc_cidr),
    #: whose ports 80 and 8080 it forwards to the console proxy (components/model/consoles.py;
    #: overlay-network.sh CONSOLE_ADDRESS). None: no console address.
    console_address: Optional[str] = None
    #: Router: "first-last", the system VMs' public range (ipplan system_public_range,
    #: registered with forsystemvms, so tenants never get its addresses); a console
    #: forward's target must lie in it (overlay-network.sh CONSOLE_RANGE). None: unset
    #: (then the router accepts no console forward).
    console_range: Optional[str] = None
    #: Router: its tenants' address, the third private IPv4 of its ENI (inside vpc_cidr, not
    #: console_address), with an Elastic IP of its own: system VMs' and tenants' traffic to
    #: the internet leaves with it, never with the infrastructure's (overlay-network.sh
    #: TENANT_ADDRESS). None: they leave with the router's own address.
    tenant_address: Optional[str] = None
    #: Router: who answers tenants' DNS (overlay-network.sh TENANT_DNS): None, the VPC resolver;
    #: "forward", the router's resolver forwarding to it (tenantPrivateDns); "recurse", the
    #: router's resolver recursing from the root (needs tenant_address).
    tenant_dns: Optional[str] = None
    #: Router: public IPv4 CIDRs tenants never reach unless tenant_vpc_access names them: the
    #: gateway-endpoint services' prefixes and what the VPC routes to VPNs or peers
    #: (components/model/tenantlimits.refused_to_tenants; overlay-network.sh TENANT_REFUSED).
    tenant_refused: tuple[str, ...] = ()

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_interface(self.overlay_address).ip)

    @property
    def cidr(self) -> str:
        return str(ipaddress.ip_interface(self.overlay_address).network)

    @property
    def classes(self) -> ipplan.AddressClasses:
        """Who is infrastructure, system VM or tenant on this overlay (components/model/ipplan.py)."""
        return ipplan.address_classes(ipaddress.IPv4Interface(self.overlay_address).network)


def check_overlay(overlay: object, role: str) -> OverlayConfig:
    """`overlay` when it is a valid OverlayConfig of an overlay `role` ("router" or
    "member"); UserDataError naming the field otherwise."""
    if not isinstance(overlay, OverlayConfig):
        raise UserDataError(f"overlay: expected an OverlayConfig, got {type(overlay).__name__}")
    o = overlay
    check_choice("overlay.role", o.role, ("router", "member"))
    if o.role != role:
        raise UserDataError(f"overlay.role: {o.role!r} is not accepted here; this instance is an overlay {role}")
    check_int("overlay.vxlan_id", o.vxlan_id, 1, rules.MAX_VXLAN_ID)
    check_int("overlay.vxlan_port", o.vxlan_port, 1, 65535)
    check_int("overlay.overlay_mtu", o.overlay_mtu, rules.MIN_OVERLAY_MTU, rules.MAX_OVERLAY_MTU)
    group = ip_value("overlay.vxlan_group", o.vxlan_group, ipaddress.IPv4Address)
    if group is None or not group.is_multicast:
        raise UserDataError(f"overlay.vxlan_group: {o.vxlan_group!r} is not accepted; expected an IPv4"
                            " multicast address, e.g. from 239.255.0.0/16")
    iface = ip_value("overlay.overlay_address", o.overlay_address, ipaddress.IPv4Interface)
    if iface is None or "/" not in o.overlay_address or not 8 <= iface.network.prefixlen <= 30 \
            or iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise UserDataError(f"overlay.overlay_address: {o.overlay_address!r} is not accepted; expected a host"
                            " address with its prefix (/8../30), e.g. '10.100.0.10/16'")
    vpc = ip_value("overlay.vpc_cidr", o.vpc_cidr, ipaddress.IPv4Network)
    if vpc is None:
        raise UserDataError(f"overlay.vpc_cidr: {o.vpc_cidr!r} is not accepted; expected an IPv4 network"
                            " such as '10.0.0.0/16'")
    if vpc.overlaps(iface.network):
        raise UserDataError(f"overlay.overlay_address: {o.overlay_address!r} overlaps the VPC {o.vpc_cidr};"
                            " the overlay CIDR must lie outside the VPC")
    _check_gateway(o, iface, role)
    _check_dnat(o, iface)
    if o.underlay_dev is not None:
        check_match("overlay.underlay_dev", o.underlay_dev, _DEV, "a network device name (max 15 characters)")
    _check_isolation(o, iface, vpc, role)
    return o


def _check_gateway(o: OverlayConfig, iface: ipaddress.IPv4Interface, role: str) -> None:
    # Members route through the router's overlay address; only the router forwards ports.
    if role == "member":
        if o.overlay_gateway is None:
            raise UserDataError("overlay.overlay_gateway: None is not accepted; members need the router's"
                                " overlay address")
        gateway = ip_value("overlay.overlay_gateway", o.overlay_gateway, ipaddress.IPv4Address)
        if gateway is None or gateway not in iface.network or gateway == iface.ip:
            raise UserDataError(f"overlay.overlay_gateway: {o.overlay_gateway!r} is not accepted; expected"
                                f" the router's address in {iface.network}, not this instance's own")
        if o.router_dnat:
            raise UserDataError(f"overlay.router_dnat: {o.router_dnat!r} is not accepted on a member; only"
                                " the router forwards ports")
    else:
        if o.overlay_gateway is not None and o.overlay_gateway != str(iface.ip):
            raise UserDataError(f"overlay.overlay_gateway: {o.overlay_gateway!r} is not accepted on the router;"
                                " leave it None (or its own address)")


def _check_dnat(o: OverlayConfig, iface: ipaddress.IPv4Interface) -> None:
    if not isinstance(o.router_dnat, tuple):
        raise UserDataError(f"overlay.router_dnat: expected a tuple of str, got {type(o.router_dnat).__name__}")
    for i, rule in enumerate(o.router_dnat):
        check_str(f"overlay.router_dnat[{i}]", rule)
        m = _DNAT.match(rule)
        ok = bool(m) and 1 <= int(m.group(2)) <= 65535 and 1 <= int(m.group(4)) <= 65535  # type: ignore[union-attr]
        if ok:
            try:
                ok = ipaddress.IPv4Address(m.group(3)) in iface.network  # type: ignore[union-attr]
            except ValueError:
                ok = False
        if not ok:
            raise UserDataError(f"overlay.router_dnat[{i}]: {rule!r} is not accepted; expected"
                                f" 'tcp|udp:port:target_ip:target_port' with target_ip in {iface.network}")


def _check_isolation(o: OverlayConfig, iface: ipaddress.IPv4Interface, vpc: ipaddress.IPv4Network,
                     role: str) -> None:
    if not isinstance(o.tenant_vpc_access, tuple):
        raise UserDataError(f"overlay.tenant_vpc_access: expected a tuple of str, got {type(o.tenant_vpc_access).__name__}")
    if iface.network.prefixlen > ipplan.MAX_OVERLAY_PREFIX:
        raise UserDataError(f"overlay.overlay_address: {o.overlay_address!r} is not accepted; the overlay must be"
                            f" a /{ipplan.MIN_OVERLAY_PREFIX}../{ipplan.MAX_OVERLAY_PREFIX} (the firewalls take"
                            " its address classes from the IP plan)")
    if role == "member":
        if o.storage_cidr is not None or o.tenant_vpc_access or o.tenant_refused:
            raise UserDataError("overlay.storage_cidr/tenant_vpc_access/tenant_refused: not accepted on a member;"
                                " only the router filters what the overlay reaches")
        for name in ("console_address", "console_range", "tenant_address", "tenant_dns"):
            if getattr(o, name) is not None:
                raise UserDataError(f"overlay.{name}: {getattr(o, name)!r} is not accepted on a member; only"
                                    " the router forwards the console")
        return
    if o.console_address is not None:
        console = ip_value("overlay.console_address", o.console_address, ipaddress.IPv4Address)
        if console is None or console not in vpc:
            raise UserDataError(f"overlay.console_address: {o.console_address!r} is not accepted; expected the"
                                f" router's second private IPv4 address, inside the VPC {vpc}")
    _check_router_tenants(o, vpc)
    if o.console_range is not None:
        check_system_public_range("overlay.console_range", o.console_range, o)
    if o.storage_cidr is None:
        raise UserDataError("overlay.storage_cidr: None is not accepted on the router; expected the dedicated"
                            " CloudStack subnet (where the EFS mount target is), e.g. '10.0.0.0/24'")
    storage = ip_value("overlay.storage_cidr", o.storage_cidr, ipaddress.IPv4Network)
    if storage is None or not storage.subnet_of(vpc):
        raise UserDataError(f"overlay.storage_cidr: {o.storage_cidr!r} is not accepted; expected the dedicated"
                            f" subnet's IPv4 CIDR inside the VPC {vpc}")
    for i, text in enumerate(o.tenant_vpc_access):
        net = ip_value(f"overlay.tenant_vpc_access[{i}]", text, ipaddress.IPv4Network)
        if net is None or net.prefixlen == 0 or net.overlaps(rules.LINK_LOCAL) \
                or net.overlaps(iface.network):
            raise UserDataError(f"overlay.tenant_vpc_access[{i}]: {text!r} is not accepted; expected an IPv4 CIDR"
                                f" (host bits zero) outside 169.254.0.0/16 and the overlay {iface.network}")


def _check_router_tenants(o: OverlayConfig, vpc: ipaddress.IPv4Network) -> None:
    """The router's tenant address, tenants' DNS mode and the destinations refused to them."""
    if o.tenant_address is not None:
        tenant = ip_value("overlay.tenant_address", o.tenant_address, ipaddress.IPv4Address)
        if tenant is None or tenant not in vpc or o.tenant_address == o.console_address:
            raise UserDataError(f"overlay.tenant_address: {o.tenant_address!r} is not accepted; expected the"
                                f" router's third private IPv4 address, inside the VPC {vpc} and not the console"
                                " address")
    if o.tenant_dns not in (None, "forward", "recurse") or (o.tenant_dns == "recurse" and o.tenant_address is None):
        raise UserDataError(f"overlay.tenant_dns: {o.tenant_dns!r} is not accepted; expected None, 'forward' or"
                            " 'recurse' (which needs tenant_address)")
    for i, text in enumerate(o.tenant_refused):
        net = ip_value(f"overlay.tenant_refused[{i}]", text, ipaddress.IPv4Network)
        if net is None or net.prefixlen == 0:
            raise UserDataError(f"overlay.tenant_refused[{i}]: {text!r} is not accepted; expected an IPv4 CIDR"
                                " (host bits zero), not 0.0.0.0/0")


def check_system_public_range(name: str, text: str, o: OverlayConfig) -> None:
    """`text` ("first-last", as ipplan.AddressRange writes it) is a range fit to be the system VMs'
    public range of overlay `o`: inside the overlay, outside its infrastructure block and its
    system range. Raises UserDataError naming `name` otherwise."""
    check_str(name, text)
    overlay, classes = ipaddress.IPv4Interface(o.overlay_address).network, o.classes
    try:
        span: Optional[ipplan.AddressRange] = ipplan.AddressRange.parse(text)
    except ValueError:
        span = None
    system = classes.system
    if span is None or span.start not in overlay or span.end not in overlay \
            or span.overlaps(ipplan.AddressRange(classes.infrastructure[0], classes.infrastructure[-1])) \
            or span.overlaps(system):
        raise UserDataError(f"{name}: {text!r} is not accepted; expected 'first-last' IPv4 addresses"
                            f" inside the overlay {overlay}, outside the infrastructure block"
                            f" {classes.infrastructure} and the system range {system} (the system VMs' public"
                            " range, e.g. ipplan's system_public_range)")


def overlay_environment(overlay: OverlayConfig) -> dict[str, str]:
    """overlay.env: the variables of userdata/overlay-network.sh (validate first with check_overlay)."""
    env = {
        "OVERLAY_ROLE": overlay.role,
        "VXLAN_ID": str(overlay.vxlan_id),
        "VXLAN_GROUP": overlay.vxlan_group,
        "VXLAN_PORT": str(overlay.vxlan_port),
        "OVERLAY_ADDRESS": overlay.overlay_address,
        "OVERLAY_MTU": str(overlay.overlay_mtu),
        "VPC_CIDR": overlay.vpc_cidr,
    }
    if overlay.overlay_gateway is not None:
        env["OVERLAY_GATEWAY"] = overlay.overlay_gateway
    if overlay.underlay_dev is not None:
        env["UNDERLAY_DEV"] = overlay.underlay_dev
    if overlay.router_dnat:
        env["ROUTER_DNAT"] = " ".join(overlay.router_dnat)
    if overlay.role == "router":
        env.update(_router_overlay_env(overlay))
    return env


def _router_overlay_env(overlay: OverlayConfig) -> dict[str, str]:
    """The router's own overlay.env variables: the address classes its firewall filters by,
    the storage subnet, the tenants' extra reach and the console forward."""
    classes = overlay.classes
    env = {"INFRA_CIDR": str(classes.infrastructure), "SYSTEM_RANGE": str(classes.system)}
    if overlay.storage_cidr is not None:
        env["STORAGE_CIDR"] = overlay.storage_cidr
    if overlay.tenant_vpc_access:
        env["TENANT_VPC_ACCESS"] = " ".join(overlay.tenant_vpc_access)
    if overlay.console_address is not None:
        env["CONSOLE_ADDRESS"] = overlay.console_address
    if overlay.console_range is not None:
        env["CONSOLE_RANGE"] = overlay.console_range
    tenants = {"TENANT_ADDRESS": overlay.tenant_address, "TENANT_DNS": overlay.tenant_dns,
               "TENANT_REFUSED": " ".join(overlay.tenant_refused) or None}
    env.update((name, value) for name, value in tenants.items() if value is not None)
    return env
