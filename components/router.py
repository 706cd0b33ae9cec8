"""OverlayRouter: the gateway between the VXLAN overlay and the VPC (and the internet)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from components import naming
from components.node import (Grant, InstanceSpec, NodeArgs, hardened_instance, instance_role, parameter_arn,
                             parameter_name)


@dataclass(frozen=True)
class OverlayRouterArgs:
    instance: InstanceSpec
    user_data_base64: pulumi.Input[str]
    overlay_cidr: str
    #: Every route table that must send the overlay CIDR to the router.
    route_table_ids: Sequence[pulumi.Input[str]]
    #: ARN of the router's script object in the boot-script bucket (BootScriptBucket.object_arn):
    #: the one object its role may read.
    boot_script_arn: pulumi.Input[str]
    tags: dict = field(default_factory=dict)
    #: The VPC's internet gateway when this stack owns it (None with an existing VPC).
    internet_gateway: Optional[pulumi.Resource] = None
    #: With a parameter root (naming.parameter_root): the SSM parameter of the forwards
    #: to VMs, which the router polls (so a changed vmForwards reaches the running
    #: router in place).
    parameter_root: Optional[pulumi.Input[str]] = None
    #: DNAT entries "proto:port:target:targetPort" of vmForwards.
    vm_forwards: Sequence[str] = ()


class OverlayRouter(pulumi.ComponentResource):
    """A Nitro instance with source/destination check off that routes the overlay CIDR,
    NATs overlay traffic leaving the VPC and forwards TCP 8080 on its address to the
    management server. Its Elastic IP is the cloud's internet egress address and, when
    `adminCidrs` allows it, the UI/API's public address.

    Outputs: instance_id, private_ip, public_ip, eni_id.
    """

    def __init__(self, name: str, args: OverlayRouterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:OverlayRouter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        grants = [Grant(["s3:GetObject"], [args.boot_script_arn])]
        if args.parameter_root is not None:
            forwards = aws.ssm.Parameter(
                f"{name}-forwards", name=parameter_name(args.parameter_root, naming.PARAM_ROUTER_FORWARDS),
                type="String", value=" ".join(args.vm_forwards) or naming.NO_FORWARDS,
                description="Router forwards to VMs (vmForwards): proto:port:target:targetPort entries",
                tags=tags, opts=child)
            grants.append(Grant(["ssm:GetParameter"], [parameter_arn(args.parameter_root, naming.PARAM_ROUTER_FORWARDS)]))
            self.forwards_parameter = forwards.name
        profile = instance_role(name, grants=grants, opts=child, tags=tags)
        instance = hardened_instance(name, NodeArgs(
            spec=args.instance, user_data_base64=args.user_data_base64, instance_profile=profile.name,
            # It forwards packets whose source or destination is an overlay
            # address, which EC2 would otherwise drop.
            source_dest_check=False, tags={**tags, "Role": "overlay-router"}), child)
        # pulumi-aws (Eip): an EIP may need the internet gateway to exist before it is
        # associated; depending on it also deletes the EIP first on destroy, where the
        # gateway's detach would otherwise fail while a public address is still mapped.
        eip = aws.ec2.Eip(f"{name}-eip", domain="vpc", instance=instance.id,
                          tags={**tags, "Name": f"{name}-eip"},
                          opts=pulumi.ResourceOptions(parent=self, depends_on=[
                              g for g in (args.internet_gateway,) if g is not None]))
        for i, table_id in enumerate(args.route_table_ids):
            aws.ec2.Route(f"{name}-overlay-route-{i}", route_table_id=table_id,
                          destination_cidr_block=args.overlay_cidr,
                          network_interface_id=instance.primary_network_interface_id, opts=child)

        self.instance_id = instance.id
        self.private_ip = instance.private_ip
        self.public_ip = eip.public_ip
        self.eni_id = instance.primary_network_interface_id
        self.register_outputs({
            "instance_id": self.instance_id,
            "private_ip": self.private_ip,
            "public_ip": self.public_ip,
            "eni_id": self.eni_id,
        })
