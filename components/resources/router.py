"""OverlayRouter: the gateway between the VXLAN overlay and the VPC (and the internet)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.model import consoles
from components.model import naming
from components.model.settings.controlplane import ROUTER_INTERFACE_ADDRESSES
from components.resources.node import (Grant, InstanceSpec, NodeArgs, hardened_instance, instance_role, parameter_arn,
                             parameter_name)


#: The router interface's private addresses besides its own: the console address and the
#: tenants' address.
SECONDARY_ADDRESSES = ROUTER_INTERFACE_ADDRESSES - 1


@dataclass(frozen=True)
class OverlayRouterArgs:
    instance: InstanceSpec
    #: The router's user data (base64) from its console address and its tenants' address:
    #: the interface's second and third private IPv4, which EC2 picks (overlay-network.sh
    #: CONSOLE_ADDRESS, TENANT_ADDRESS).
    render_user_data: Callable[[pulumi.Output[str], pulumi.Output[str]], pulumi.Input[str]]
    overlay_cidr: str
    #: Every route table that must send the overlay CIDR to the router.
    route_table_ids: Sequence[pulumi.Input[str]]
    #: ARN of the router's script object in the boot-script bucket (BootScriptBucket.object_arn):
    #: the one object its role may read.
    boot_script_arn: pulumi.Input[str]
    tags: dict = field(default_factory=dict)
    #: The VPC's internet gateway when this stack owns it (None with an existing VPC).
    internet_gateway: Optional[pulumi.Resource] = None
    #: With a parameter root (naming.parameter_root): the SSM parameters of the forwards
    #: to VMs and to the console proxy, which the router polls (so a changed vmForwards,
    #: or a console proxy at a new address, reaches the running router in place).
    parameter_root: Optional[pulumi.Input[str]] = None
    #: DNAT entries "proto:port:target:targetPort" of vmForwards.
    vm_forwards: Sequence[str] = ()
    #: The console private address of the last update (its `router` output), None on a new
    #: stack: it stays the console address (see _secondary_addresses).
    previous_console_ip: Optional[str] = None


class OverlayRouter(pulumi.ComponentResource):
    """A Nitro instance with source/destination check off that routes the overlay CIDR,
    NATs overlay traffic leaving the VPC and forwards TCP 8080 on its address to the
    management server. Its Elastic IP is the infrastructure's internet egress address and,
    when `adminCidrs` allows it, the UI/API's public address.

    Its network interface has a second private IPv4 with a second Elastic IP, the console
    address (components/model/consoles.py): console URLs name it, and the router forwards its
    ports 80 and 8080 to the console proxy VM that the registration publishes.

    A third private IPv4 with a third Elastic IP is the tenants' address: system VMs' and
    tenants' traffic to the internet leaves with it (overlay-network.sh TENANT_ADDRESS), so
    that an allowlist of the infrastructure's address (which every instance's AWS API calls
    use) never admits a tenant. EC2 picks both secondary addresses; on a new stack the lower
    one is the console address, the higher one the tenants'; later the console address stays
    the one of the last update (see _secondary_addresses).

    Outputs: instance_id, private_ip, public_ip, eni_id, console_private_ip,
    console_public_ip, tenant_private_ip, tenant_public_ip, console_forwards_parameter (the
    SSM parameter's name, or None without a parameter root).
    """

    def __init__(self, name: str, args: OverlayRouterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:OverlayRouter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        grants = [Grant(["s3:GetObject"], [args.boot_script_arn]), *args.instance.role_grants]
        self.forwards_parameter = None
        self.console_forwards_parameter = None
        if args.parameter_root is not None:
            grants.append(self._forward_parameters(name, args, tags))
        profile = instance_role(name, grants=grants, opts=child, tags=tags).profile
        eni, console_private_ip, tenant_private_ip = self._interface(name, args, tags)
        instance = hardened_instance(name, NodeArgs(
            spec=args.instance, user_data_base64=args.render_user_data(console_private_ip, tenant_private_ip),
            instance_profile=profile.name, network_interface_id=eni.id,
            tags={**tags, "Role": "overlay-router"}), child)
        eip, console_eip, tenant_eip = self._elastic_ips(name, args, tags, eni, console_private_ip,
                                                         tenant_private_ip)
        for i, table_id in enumerate(args.route_table_ids):
            aws.ec2.Route(f"{name}-overlay-route-{i}", route_table_id=table_id,
                          destination_cidr_block=args.overlay_cidr,
                          network_interface_id=eni.id, opts=child)

        self.instance = instance
        self.instance_id = instance.id
        self.private_ip = eni.private_ip
        self.public_ip = eip.public_ip
        self.eni_id = eni.id
        self.console_private_ip = console_private_ip
        self.console_public_ip = console_eip.public_ip
        self.tenant_private_ip = tenant_private_ip
        self.tenant_public_ip = tenant_eip.public_ip
        self.register_outputs({
            "instance_id": self.instance_id,
            "private_ip": self.private_ip,
            "public_ip": self.public_ip,
            "eni_id": self.eni_id,
            "console_private_ip": self.console_private_ip,
            "console_public_ip": self.console_public_ip,
            "tenant_private_ip": self.tenant_private_ip,
            "tenant_public_ip": self.tenant_public_ip,
            "console_forwards_parameter": self.console_forwards_parameter,
        })

    def _forward_parameters(self, name: str, args: OverlayRouterArgs, tags: dict) -> Grant:
        """The SSM parameters of the forwards to VMs and to the console proxy (sets
        forwards_parameter and console_forwards_parameter); returns the router's grant to read them."""
        forwards = aws.ssm.Parameter(
            f"{name}-forwards", name=parameter_name(args.parameter_root, naming.PARAM_ROUTER_FORWARDS),
            type="String", value=" ".join(args.vm_forwards) or naming.NO_FORWARDS,
            description="Router forwards to VMs (vmForwards): proto:port:target:targetPort entries",
            tags=tags, opts=pulumi.ResourceOptions(parent=self))
        # Written by the registration once the console proxy runs (its address is
        # CloudStack's choice): Pulumi creates it and never resets it.
        console_forwards = aws.ssm.Parameter(
            f"{name}-console-forwards",
            name=parameter_name(args.parameter_root, naming.PARAM_CONSOLE_FORWARDS),
            type="String", value=consoles.NO_CONSOLE,
            description="Router forwards of the console address to the console proxy VM (the registration)",
            tags=tags, opts=pulumi.ResourceOptions(parent=self, ignore_changes=["value"]))
        self.forwards_parameter = forwards.name
        self.console_forwards_parameter = console_forwards.name
        return Grant(["ssm:GetParameter"], [
            parameter_arn(args.parameter_root, naming.PARAM_ROUTER_FORWARDS),
            parameter_arn(args.parameter_root, naming.PARAM_CONSOLE_FORWARDS)])

    def _interface(self, name: str, args: OverlayRouterArgs, tags: dict
                   ) -> tuple[aws.ec2.NetworkInterface, pulumi.Output[str], pulumi.Output[str]]:
        """The router's own interface and its (console, tenants') private addresses."""
        # Two more private addresses that EC2 picks (a fixed one could already be another
        # instance's): the console address and the tenants'. The instance type must allow
        # three IPv4 addresses per interface (EC2 User Guide, "Maximum IP addresses per
        # network interface"; checked with the settings: components/model/settings/
        # controlplane.py router_interface_problems).
        eni = aws.ec2.NetworkInterface(
            f"{name}-eni", subnet_id=args.instance.subnet_id,
            security_groups=list(args.instance.security_group_ids), private_ips_count=SECONDARY_ADDRESSES,
            # It forwards packets whose source or destination is an overlay
            # address, which EC2 would otherwise drop.
            source_dest_check=False,
            description="CloudStack overlay router: its address, the console address and the tenants' address",
            tags={**tags, "Name": f"{name}-eni"}, opts=pulumi.ResourceOptions(parent=self))
        previous = args.previous_console_ip
        secondary = pulumi.Output.all(eni.private_ip, eni.private_ips).apply(
            lambda v: _secondary_addresses(v[0], v[1], previous))
        return eni, secondary.apply(lambda pair: pair[0]), secondary.apply(lambda pair: pair[1])

    def _elastic_ips(self, name: str, args: OverlayRouterArgs, tags: dict, eni: aws.ec2.NetworkInterface,
                     console_private_ip: pulumi.Output[str], tenant_private_ip: pulumi.Output[str]
                     ) -> tuple[aws.ec2.Eip, aws.ec2.Eip, aws.ec2.Eip]:
        """The Elastic IPs of the router's own, console and tenants' addresses."""
        # pulumi-aws (Eip): an EIP may need the internet gateway to exist before it is
        # associated; depending on it also deletes the EIP first on destroy, where the
        # gateway's detach would otherwise fail while a public address is still mapped.
        # Associated with the interface's addresses (not the instance): each EIP maps to
        # one of them, and they stay mapped across a replacement of the instance.
        after_gateway = pulumi.ResourceOptions(parent=self, depends_on=[
            g for g in (args.internet_gateway,) if g is not None])
        return tuple(aws.ec2.Eip(f"{name}{suffix}", domain="vpc", network_interface=eni.id,
                                 associate_with_private_ip=private_ip,
                                 tags={**tags, "Name": f"{name}{suffix}"}, opts=after_gateway)
                     for suffix, private_ip in (("-eip", eni.private_ip), ("-console-eip", console_private_ip),
                                                ("-tenant-eip", tenant_private_ip)))


def _secondary_addresses(primary: str, addresses: Sequence[str],
                         previous_console: Optional[str] = None) -> tuple[str, str]:
    """(console address, tenants' address): the interface's private addresses other than
    `primary` (private_ips holds the primary one too, in no stated order).

    The console address is `previous_console` (the last update's) when the interface still
    has it: the running router DNATs that address (its user data is read at first boot only,
    components/resources/node.py), and console URLs name its Elastic IP. On a stack whose
    interface had the console address only, the address EC2 adds for tenants may sort below
    it; ordering alone would move the console Elastic IP onto it. Without a previous value
    (a new stack, or one whose interface lost it): the lower address is the console's, the
    higher the tenants'. Raises ValueError unless there are exactly SECONDARY_ADDRESSES."""
    others = sorted(set(addresses or ()) - {primary}, key=ipaddress.IPv4Address)
    if len(others) != SECONDARY_ADDRESSES:
        raise ValueError(f"the router's network interface has private addresses {sorted(addresses or ())} "
                         f"besides its primary {primary}: expected exactly {SECONDARY_ADDRESSES} "
                         f"(private_ips_count={SECONDARY_ADDRESSES})")
    if previous_console in others:
        others.remove(previous_console)
        return previous_console, others[0]
    return others[0], others[1]
