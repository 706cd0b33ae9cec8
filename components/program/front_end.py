"""Front-end tier: the Application Load Balancer in front of the management servers' UI/API,
when the settings put it there (Settings.ui_behind_load_balancer): then it is the UI/API's
only way in (the router forwards none: control_plane.ui_forward); otherwise the router's
forward of 8080 is, as in the cheapest stacks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

from components.model import frontend
from components.program.context import Context
from components.program.lookups import load_balancer_subnet_cidrs
from components.program.network import Network
from components.resources.loadbalancer import UiLoadBalancer, UiLoadBalancerArgs


@dataclass(frozen=True)
class FrontEnd:
    """The front-end tier's result."""

    #: None: no load balancer (the router forwards the UI/API).
    load_balancer: Optional[UiLoadBalancer] = None
    #: The load balancer's subnets (CIDRs): where CloudStack takes the client's address from
    #: its header (proxy.cidr).
    subnet_cidrs: tuple[str, ...] = ()
    #: https://<uiDomainName> with a certificate; None otherwise (the URL is the load
    #: balancer's DNS name, known only once it exists).
    https_url: Optional[str] = None

    @property
    def management_sg_ids(self) -> list[pulumi.Output[str]]:
        """The groups a management server wears for the front end (8080 from the load balancer)."""
        return [] if self.load_balancer is None else [self.load_balancer.management_sg_id]

    def url(self, router_public_ip: pulumi.Input[str]) -> pulumi.Output[str]:
        """The UI/API's base URL: the load balancer's, else the router's Elastic IP on 8080."""
        if self.load_balancer is not None:
            return self.load_balancer.url
        return pulumi.Output.concat("http://", router_public_ip, f":{frontend.TARGET_PORT}")

    def tls_settings(self) -> tuple[tuple[str, str, str], ...]:
        """CloudStack's settings for the TLS front end; () without HTTPS."""
        return () if self.https_url is None else frontend.tls_settings(self.https_url, self.subnet_cidrs)


def declare_front_end(ctx: Context, network: Network) -> FrontEnd:
    """The load balancer, its subnets (in the instances' AZ and the database's second AZ) and
    HTTPS, when the settings ask for them."""
    settings = ctx.settings
    if not settings.ui_behind_load_balancer:
        return FrontEnd()
    underlay = network.underlay
    existing = settings.uses_existing_vpc
    cidrs = load_balancer_subnet_cidrs(settings) if existing else tuple(str(n) for n in settings.ui_subnet_cidrs)
    balancer = UiLoadBalancer("ui", UiLoadBalancerArgs(
        vpc_id=underlay.vpc_id, admin_cidrs=[str(n) for n in settings.admin_cidrs],
        subnet_cidrs=() if existing else cidrs, availability_zones=list(ctx.zones),
        internet_gateway_id=None if underlay.internet_gateway is None else underlay.internet_gateway.id,
        subnet_ids=settings.ui_subnet_ids, https=settings.ui_https, certificate_arn=settings.ui_certificate_arn,
        domain_name=settings.ui_domain_name, hosted_zone_id=settings.ui_hosted_zone_id, tags=ctx.tags))
    https_url = frontend.base_url(True, settings.ui_domain_name, "") if settings.ui_https else None
    return FrontEnd(balancer, cidrs, https_url)


def attach_management_servers(front: FrontEnd, addresses: Sequence[pulumi.Input[str]]) -> None:
    """Each management server (its VPC address) as a target of the load balancer, by its
    index: a server keeps its target as servers are added or removed above it."""
    if front.load_balancer is None:
        return
    for index, address in enumerate(addresses):
        front.load_balancer.attach(str(index), address)
