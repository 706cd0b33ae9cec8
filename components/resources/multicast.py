"""MulticastDomain: the Transit Gateway that lets the VTEPs find each other by multicast."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class MulticastDomainArgs:
    vpc_id: pulumi.Input[str]
    cloudstack_subnet_id: pulumi.Input[str]
    tags: dict = field(default_factory=dict)
    #: Create/update/delete timeout of the gateway, attachment and domain (provider default: 10 minutes).
    timeout_minutes: int = 30


class MulticastDomain(pulumi.ComponentResource):
    """Transit Gateway (multicast on), its VPC attachment on the CloudStack subnet, a multicast
    domain with IGMPv2, and the subnet associated with the domain.

    Outputs: transit_gateway_id, attachment_id, multicast_domain_id; `association` is the
    resource the overlay members wait for.
    """

    def __init__(self, name: str, args: MulticastDomainArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:MulticastDomain", name, None, opts)
        minutes = f"{args.timeout_minutes}m"
        child = pulumi.ResourceOptions(parent=self, custom_timeouts=pulumi.CustomTimeouts(
            create=minutes, update=minutes, delete=minutes))
        tags = dict(args.tags)
        # multicast_support can only be set at creation: changing it replaces the
        # gateway. The gateway routes nothing: it exists for its multicast domain.
        tgw = aws.ec2transitgateway.TransitGateway(
            f"{name}-tgw", description="CloudStack VXLAN overlay multicast",
            multicast_support="enable",
            default_route_table_association="disable", default_route_table_propagation="disable",
            auto_accept_shared_attachments="disable", dns_support="disable", vpn_ecmp_support="disable",
            tags={**tags, "Name": f"{name}-tgw"}, opts=child)
        attachment = aws.ec2transitgateway.VpcAttachment(
            f"{name}-attachment", transit_gateway_id=tgw.id, vpc_id=args.vpc_id,
            subnet_ids=[args.cloudstack_subnet_id],
            transit_gateway_default_route_table_association=False,
            transit_gateway_default_route_table_propagation=False,
            tags={**tags, "Name": f"{name}-attachment"}, opts=child)
        # VXLAN VTEPs join their group with IGMP; IGMPv2 and static sources are
        # mutually exclusive in a domain.
        domain = aws.ec2transitgateway.MulticastDomain(
            f"{name}-domain", transit_gateway_id=tgw.id, igmpv2_support="enable",
            static_sources_support="disable", auto_accept_shared_associations="disable",
            tags={**tags, "Name": f"{name}-domain"}, opts=child)
        association = aws.ec2transitgateway.MulticastDomainAssociation(
            f"{name}-association", transit_gateway_multicast_domain_id=domain.id,
            transit_gateway_attachment_id=attachment.id, subnet_id=args.cloudstack_subnet_id, opts=child)

        self.transit_gateway_id = tgw.id
        self.attachment_id = attachment.id
        self.multicast_domain_id = domain.id
        #: Instances wait for this: before it exists no VTEP can find another.
        self.association = association
        self.register_outputs({
            "transit_gateway_id": tgw.id,
            "attachment_id": attachment.id,
            "multicast_domain_id": domain.id,
        })
