"""Network tier: the VPC underlay and the Transit Gateway multicast domain the overlay runs on."""

from __future__ import annotations

from dataclasses import dataclass

from components.program.context import Context
from components.resources.multicast import MulticastDomain, MulticastDomainArgs
from components.resources.underlay import Underlay, UnderlayArgs


@dataclass(frozen=True)
class Network:
    """The network tier's components."""

    underlay: Underlay
    multicast: MulticastDomain


def declare_network(ctx: Context) -> Network:
    """The underlay (VPC, subnets, security groups, routes), then the multicast domain
    its dedicated subnet joins."""
    settings, plan = ctx.settings, ctx.plan
    underlay = Underlay("underlay", UnderlayArgs(
        vpc_cidr=str(settings.vpc_cidr), cloudstack_subnet_cidr=str(settings.cloudstack_subnet_cidr),
        db_subnet_cidrs=[str(n) for n in settings.db_subnet_cidrs], overlay_cidr=str(settings.overlay_cidr),
        admin_cidrs=[str(n) for n in settings.admin_cidrs],
        management_overlay_ips=[str(a) for a in plan.management_servers],
        availability_zone=ctx.zone, db_availability_zones=list(ctx.zones),
        vpc_id=settings.vpc_id, cloudstack_subnet_id=settings.cloudstack_subnet_id,
        db_subnet_ids=settings.db_subnet_ids, route_table_ids=settings.route_table_ids,
        system_range_cidrs=[str(n) for n in plan.system_range.cidrs()],
        vm_forward_rules=[(f.protocol, f.port, [str(n) for n in f.sources],
                           f"VM service {f.protocol} {f.port} to {f.target}:{f.target_port} (vmForwards)")
                          for f in settings.vm_forwards],
        router_pair=settings.router_count > 1, ui_through_router=not settings.ui_behind_load_balancer,
        tags=ctx.tags))
    multicast = MulticastDomain("multicast", MulticastDomainArgs(
        vpc_id=underlay.vpc_id, cloudstack_subnet_id=underlay.cloudstack_subnet_id, tags=ctx.tags,
        timeout_minutes=settings.transit_gateway_timeout_minutes))
    return Network(underlay, multicast)
