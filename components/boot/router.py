"""User data of the overlay router (role script userdata/router.sh)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from components.boot.common import BootWaits, check_common, common_env, render_user_data
from components.boot.overlay import OverlayConfig


@dataclass(frozen=True)
class RouterPairBoot:
    index: int                         # 0 or 1; router 0 is the preferred active one
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
    pair: Optional[RouterPairBoot] = None


def router_environment(boot: RouterBoot) -> dict[str, str]:
    """boot.env of the router (validated; UserDataError names a bad field)."""
    check_common(boot, RouterBoot, "router")
    return common_env(boot, "router")


def render_router_user_data(boot: RouterBoot, *, files: Optional[Mapping[str, str]] = None) -> str:
    """Base64 of the gzip'd boot script of the overlay router."""
    return render_user_data("router", router_environment, boot, files)
