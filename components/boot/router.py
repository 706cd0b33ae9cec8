"""User data of the overlay router (role script userdata/router.sh), alone or as one of
a pair that shares the overlay gateway by VRRP (keepalived; docs/overlay.md "Router pair")."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

from components.boot.checks import UserDataError, check_int, check_match, ip_value
from components.boot.common import BootWaits, check_common, common_env, render_user_data
from components.boot.overlay import OverlayConfig
from components.model import ipplan

#: EC2 resource IDs: the type's prefix and 8 or 17 hexadecimal digits (EC2 User Guide,
#: "Resource IDs": longer IDs since 2018, older resources keep 8).
_ROUTE_TABLE_ID = re.compile(r"^rtb-([0-9a-f]{8}|[0-9a-f]{17})$")
_ALLOCATION_ID = re.compile(r"^eipalloc-([0-9a-f]{8}|[0-9a-f]{17})$")
#: Which of the router's private addresses each Elastic IP belongs to: "infrastructure"
#: the primary (UI/API, the infrastructure's NAT), "console" the console address,
#: "tenant" the tenants' address (overlay-network.sh CONSOLE_ADDRESS, TENANT_ADDRESS).
EIP_ROLES = ("infrastructure", "console", "tenant")


@dataclass(frozen=True)
class RouterPairBoot:
    index: int                         # 0 or 1; router 0 is the preferred active one (higher VRRP priority)
    peer_private_ip: str               # the other router's primary VPC address (VRRP unicast peer)
    route_table_ids: tuple[str, ...]   # every managed route table whose overlay-CIDR route the active router takes
    eip_allocations: Mapping[str, str] # {"infrastructure": "eipalloc-..", "console": "eipalloc-..", "tenant": "eipalloc-.."}


@dataclass(frozen=True)
class RouterBoot:
    aws_region: str
    prefix: str                      # "/cloudstack-ec2/<stack>"
    fqdn: str                        # e.g. "router.cloudstack.internal"
    overlay: OverlayConfig           # role "router"
    boot_bucket: str                 # the deployment's boot-script bucket (BootScriptBucket.bucket_name)
    waits: BootWaits = field(default_factory=BootWaits)
    #: None: the one router of the stack, whose overlay address is the gateway. Else this
    #: router's place in the pair: its overlay address must be ipplan.router_pair_address
    #: of its index, and the gateway (ipplan's router address) becomes a VRRP address.
    pair: Optional[RouterPairBoot] = None


def _wanted_eips(overlay: OverlayConfig) -> tuple[str, ...]:
    """The Elastic IP roles of a router with these overlay settings (no console or
    tenants' address: no Elastic IP for it)."""
    present = {"infrastructure": True, "console": overlay.console_address is not None,
               "tenant": overlay.tenant_address is not None}
    return tuple(role for role in EIP_ROLES if present[role])


def check_pair(pair: object, overlay: OverlayConfig) -> RouterPairBoot:
    """`pair` when it is a valid RouterPairBoot for a router with `overlay` (checked
    before); UserDataError naming the field, the value and what is accepted otherwise."""
    if not isinstance(pair, RouterPairBoot):
        raise UserDataError(f"pair: expected a RouterPairBoot or None, got {type(pair).__name__}")
    check_int("pair.index", pair.index, 0, ipplan.ROUTER_PAIR_SLOTS - 1)
    network = ipaddress.IPv4Interface(overlay.overlay_address).network
    own = ipplan.router_pair_address(network, pair.index)
    if overlay.ip != str(own):
        raise UserDataError(f"overlay.overlay_address: {overlay.overlay_address!r} is not accepted for router"
                            f" {pair.index} of a pair; expected '{own}/{network.prefixlen}'"
                            " (ipplan.router_pair_address): the gateway address moves between the routers")
    vpc = ipaddress.IPv4Network(overlay.vpc_cidr)
    peer = ip_value("pair.peer_private_ip", pair.peer_private_ip, ipaddress.IPv4Address)
    if peer is None or peer not in vpc or pair.peer_private_ip in (overlay.console_address, overlay.tenant_address):
        raise UserDataError(f"pair.peer_private_ip: {pair.peer_private_ip!r} is not accepted; expected the other"
                            f" router's primary private IPv4 address, inside the VPC {vpc}")
    _check_ids("pair.route_table_ids", pair.route_table_ids, _ROUTE_TABLE_ID, "route table IDs like 'rtb-0123456789abcdef0'")
    if not isinstance(pair.eip_allocations, Mapping):
        raise UserDataError(f"pair.eip_allocations: expected a mapping, got {type(pair.eip_allocations).__name__}")
    wanted = _wanted_eips(overlay)
    if sorted(pair.eip_allocations) != sorted(wanted):
        raise UserDataError(f"pair.eip_allocations: keys {sorted(pair.eip_allocations)!r} are not accepted; expected"
                            f" exactly {list(wanted)!r} (one allocation per private address this router has)")
    _check_ids("pair.eip_allocations", tuple(pair.eip_allocations[r] for r in wanted), _ALLOCATION_ID,
               "allocation IDs like 'eipalloc-0123456789abcdef0'", names=[f"pair.eip_allocations[{r!r}]" for r in wanted])
    return pair


def _check_ids(name: str, ids: object, pattern: re.Pattern, accepted: str, names: Optional[list[str]] = None) -> None:
    """A non-empty tuple of distinct EC2 IDs matching `pattern`."""
    if not isinstance(ids, tuple) or not ids:
        raise UserDataError(f"{name}: expected a non-empty tuple of str, got {ids!r}")
    for i, value in enumerate(ids):
        check_match(names[i] if names else f"{name}[{i}]", value, pattern, accepted)
    if len(set(ids)) != len(ids):
        raise UserDataError(f"{name}: {ids!r} is not accepted; each ID once")


def pair_env(pair: RouterPairBoot, overlay: OverlayConfig) -> dict[str, str]:
    """The CSEC2_ROUTER_PAIR_* and CSEC2_ROUTER_EIP_* variables of boot.env (router.sh
    writes keepalived's configuration from them; validate first with check_pair)."""
    env = {
        "CSEC2_ROUTER_PAIR_INDEX": str(pair.index),
        "CSEC2_ROUTER_PAIR_PEER": pair.peer_private_ip,
        "CSEC2_ROUTER_PAIR_GATEWAY": str(overlay.classes.router),
        "CSEC2_ROUTER_PAIR_ROUTE_TABLES": " ".join(pair.route_table_ids),
    }
    env.update((f"CSEC2_ROUTER_EIP_{role.upper()}", pair.eip_allocations[role]) for role in _wanted_eips(overlay))
    return env


def router_environment(boot: RouterBoot) -> dict[str, str]:
    """boot.env of the router (validated; UserDataError names a bad field)."""
    check_common(boot, RouterBoot, "router")
    env = common_env(boot, "router")
    if boot.pair is not None:
        env.update(pair_env(check_pair(boot.pair, boot.overlay), boot.overlay))
    return env


def render_router_user_data(boot: RouterBoot, *, files: Optional[Mapping[str, str]] = None) -> str:
    """Base64 of the gzip'd boot script of the overlay router."""
    return render_user_data("router", router_environment, boot, files)
