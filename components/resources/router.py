"""OverlayRouter: the gateway between the VXLAN overlay and the VPC (and the internet)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Callable, Collection, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.model import consoles
from components.model import naming
from components.model.naming import member_name
from components.model.settings.controlplane import ROUTER_INTERFACE_ADDRESSES
from components.resources.node import (Grant, InstanceSpec, NodeArgs, ec2_arn, hardened_instance, instance_role,
                                        parameter_arn, parameter_name)


#: The router interface's private addresses besides its own: the console address and the
#: tenants' address.
SECONDARY_ADDRESSES = ROUTER_INTERFACE_ADDRESSES - 1

#: The Elastic IPs' roles, as the takeover names them (RouterPairBoot.eip_allocations):
#: the router's own address (UI/API, the infrastructure's egress), the console address and
#: the tenants' address.
EIP_ROLES = ("infrastructure", "console", "tenant")

#: With a pair, what the active router changes on AWS and Pulumi must not put back: like
#: chime/alternat (whose README warns that it must own the routes it replaces) and
#: ClusterLabs' aws-vpc-move-ip (which ReplaceRoutes the address to its own
#: interface), the takeover owns the overlay route's target, and a `pulumi up` that put
#: router 0 back would undo every failover. The same holds for the Elastic IPs the takeover
#: re-associates (EC2 AssociateAddress). With one router Pulumi owns both again, and puts
#: them back on router 0 (after a refresh shows them elsewhere).
ROUTE_TARGET_OWNED_BY_PAIR = ["network_interface_id"]
EIP_ASSOCIATION_OWNED_BY_PAIR = ["network_interface", "associate_with_private_ip", "instance"]


#: The routers' instances' Role tag.
ROUTER_ROLE_TAG = "overlay-router"


@dataclass(frozen=True)
class RouterPairInputs:
    """What router `index` of a pair is told of the other and of the AWS side it takes over
    (the program turns it into boot.RouterPairBoot): the peer's primary VPC address, every
    managed route table id, and {EIP_ROLES[i]: allocation id}."""

    index: int
    peer_private_ip: pulumi.Output[str]
    route_table_ids: pulumi.Output[list]
    eip_allocations: pulumi.Output[dict]


@dataclass(frozen=True)
class RouterMember:
    """One router of the pair (or the only one): its instance, interface and addresses."""

    instance: aws.ec2.Instance
    eni: aws.ec2.NetworkInterface
    console_private_ip: pulumi.Output[str]
    tenant_private_ip: pulumi.Output[str]


@dataclass(frozen=True)
class OverlayRouterArgs:
    instance: InstanceSpec
    #: A router's user data (base64), called once per router with its console address and
    #: its tenants' address (its interface's second and third private IPv4, which EC2 picks;
    #: overlay-network.sh CONSOLE_ADDRESS, TENANT_ADDRESS) and, with `count` 2, what it must
    #: know of the pair (None with one router).
    render_user_data: Callable[[pulumi.Output[str], pulumi.Output[str], Optional[RouterPairInputs]],
                               pulumi.Input[str]]
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
    #: The router's forward of the UI/API port to the management server (a DNAT entry
    #: "tcp:8080:<overlay address>:8080"), or "" when the UI/API is behind the load
    #: balancer: then the router forwards no UI/API at all (its own address's 8080 leads
    #: nowhere; the console address's 8080 stays the console's).
    ui_forward: str = ""
    #: The console private address of the last update (its `router` output), None on a new
    #: stack: it stays the console address (see _secondary_addresses).
    previous_console_ip: Optional[str] = None
    #: routerCount: 1, or 2 for an active/standby pair (VRRP, components/boot/router.py).
    count: int = 1
    #: Replace router 0 in this update so that it boots with its current user data (a router
    #: 0 launched with one router's boot, once router 1 exists: deployed.router0_renewal).
    renew_router0: bool = False
    #: Members (by resource name: "<name>", "<name>-1") replaced in this update when their
    #: user data differs from the recorded one (the renewInstances setting; NodeArgs.renew_user_data).
    renew: Collection[str] = ()


class OverlayRouter(pulumi.ComponentResource):
    """A Nitro instance with source/destination check off that routes the overlay CIDR,
    NATs overlay traffic leaving the VPC and, unless the UI/API is behind the load balancer
    (`ui_forward` ""), forwards TCP 8080 on its address to the management server. Its Elastic
    IP is the infrastructure's internet egress address and, without the load balancer and
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

    With `count` 2 a second router ("<name>-1": its own instance, interface and console and
    tenants' addresses) stands by; router 0 keeps the names of a single router. Both share
    the role, the Elastic IPs (associated with router 0 at first) and the overlay routes
    (to router 0 at first), which the active router takes over (takeover_grants). `members`:
    each router (RouterMember), router 0 first.

    Outputs: instance_id, private_ip, public_ip, eni_id, console_private_ip,
    console_public_ip, tenant_private_ip, tenant_public_ip (router 0's), console_forwards_parameter
    (the SSM parameter's name, or None without a parameter root), instance_ids (every router's).
    """

    def __init__(self, name: str, args: OverlayRouterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:OverlayRouter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        grants = [Grant(["s3:GetObject"], [args.boot_script_arn]), *args.instance.role_grants]
        self.forwards_parameter = None
        self.console_forwards_parameter = None
        self.ui_forward_parameter = None
        if args.parameter_root is not None:
            grants.append(self._forward_parameters(name, args, tags))
        # Every interface before any instance: each router's boot script names its peer's address.
        interfaces = [self._interface(member_name(name, i), args, tags, args.previous_console_ip if i == 0 else None)
                      for i in range(args.count)]
        eni, console_private_ip, tenant_private_ip = interfaces[0]
        eips = self._elastic_ips(name, args, tags, eni, console_private_ip, tenant_private_ip)
        pair = args.count > 1
        if pair:
            grants += takeover_grants(args.route_table_ids, [e.id for e, _, _ in interfaces], [e.id for e in eips],
                                      {**tags, "Role": ROUTER_ROLE_TAG})
        profile = instance_role(name, grants=grants, opts=child, tags=tags).profile
        self.members = [
            RouterMember(hardened_instance(member_name(name, i), NodeArgs(
                spec=args.instance, user_data_base64=args.render_user_data(console, tenant, self._pair_inputs(
                    i, interfaces, args.route_table_ids, eips) if pair else None),
                instance_profile=profile.name, network_interface_id=member_eni.id,
                tags={**tags, "Role": ROUTER_ROLE_TAG}, renew_user_data=(args.renew_router0 and i == 0) or member_name(name, i) in args.renew), child),
                member_eni, console, tenant)
            for i, (member_eni, console, tenant) in enumerate(interfaces)]
        route_opts = pulumi.ResourceOptions(parent=self, ignore_changes=ROUTE_TARGET_OWNED_BY_PAIR if pair else None)
        for i, table_id in enumerate(args.route_table_ids):
            aws.ec2.Route(f"{name}-overlay-route-{i}", route_table_id=table_id,
                          destination_cidr_block=args.overlay_cidr,
                          network_interface_id=eni.id, opts=route_opts)

        eip, console_eip, tenant_eip = eips
        instance = self.members[0].instance
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
            "instance_ids": [m.instance.id for m in self.members],
        })

    @staticmethod
    def _pair_inputs(index: int, interfaces: Sequence[tuple[aws.ec2.NetworkInterface, pulumi.Output[str],
                                                            pulumi.Output[str]]],
                     route_table_ids: Sequence[pulumi.Input[str]],
                     eips: Sequence[aws.ec2.Eip]) -> RouterPairInputs:
        """What router `index` of the pair is told (RouterPairInputs)."""
        peer_eni = interfaces[1 - index][0]
        return RouterPairInputs(
            index=index, peer_private_ip=peer_eni.private_ip,
            route_table_ids=pulumi.Output.all(*route_table_ids),
            eip_allocations=pulumi.Output.all(*[e.id for e in eips]).apply(lambda ids: dict(zip(EIP_ROLES, ids))))

    def _forward_parameters(self, name: str, args: OverlayRouterArgs, tags: dict) -> Grant:
        """The SSM parameters of the forwards to VMs, to the console proxy and of the UI/API
        (sets forwards_parameter, console_forwards_parameter and ui_forward_parameter);
        returns the router's grant to read them. The router polls all three
        (userdata/router.sh apply_forwards): its user data is read at its first boot only."""
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
        ui_forward = aws.ssm.Parameter(
            f"{name}-ui-forward", name=parameter_name(args.parameter_root, naming.PARAM_UI_FORWARD),
            type="String", value=args.ui_forward or naming.NO_FORWARDS,
            description="Router forward of the UI/API port to the management server; none behind the load balancer",
            tags=tags, opts=pulumi.ResourceOptions(parent=self))
        self.forwards_parameter = forwards.name
        self.console_forwards_parameter = console_forwards.name
        self.ui_forward_parameter = ui_forward.name
        return Grant(["ssm:GetParameter"], [
            parameter_arn(args.parameter_root, which) for which in
            (naming.PARAM_ROUTER_FORWARDS, naming.PARAM_CONSOLE_FORWARDS, naming.PARAM_UI_FORWARD)])

    def _interface(self, name: str, args: OverlayRouterArgs, tags: dict, previous: Optional[str]
                   ) -> tuple[aws.ec2.NetworkInterface, pulumi.Output[str], pulumi.Output[str]]:
        """A router's own interface and its (console, tenants') private addresses; `previous`:
        the last update's console address of this interface (see _secondary_addresses)."""
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
        secondary = pulumi.Output.all(eni.private_ip, eni.private_ips).apply(
            lambda v: _secondary_addresses(v[0], v[1], previous))
        return eni, secondary.apply(lambda pair: pair[0]), secondary.apply(lambda pair: pair[1])

    def _elastic_ips(self, name: str, args: OverlayRouterArgs, tags: dict, eni: aws.ec2.NetworkInterface,
                     console_private_ip: pulumi.Output[str], tenant_private_ip: pulumi.Output[str]
                     ) -> tuple[aws.ec2.Eip, aws.ec2.Eip, aws.ec2.Eip]:
        """The Elastic IPs of router 0's own, console and tenants' addresses (EIP_ROLES order).
        With a pair, the active router moves them (EIP_ASSOCIATION_OWNED_BY_PAIR)."""
        # pulumi-aws (Eip): an EIP may need the internet gateway to exist before it is
        # associated; depending on it also deletes the EIP first on destroy, where the
        # gateway's detach would otherwise fail while a public address is still mapped.
        # Associated with the interface's addresses (not the instance): each EIP maps to
        # one of them, and they stay mapped across a replacement of the instance.
        after_gateway = pulumi.ResourceOptions(parent=self, depends_on=[
            g for g in (args.internet_gateway,) if g is not None],
            ignore_changes=EIP_ASSOCIATION_OWNED_BY_PAIR if args.count > 1 else None)
        return tuple(aws.ec2.Eip(f"{name}{suffix}", domain="vpc", network_interface=eni.id,
                                 associate_with_private_ip=private_ip,
                                 tags={**tags, "Name": f"{name}{suffix}"}, opts=after_gateway)
                     for suffix, private_ip in (("-eip", eni.private_ip), ("-console-eip", console_private_ip),
                                                ("-tenant-eip", tenant_private_ip)))


def takeover_grants(route_table_ids: Sequence[pulumi.Input[str]], eni_ids: Sequence[pulumi.Input[str]],
                    allocation_ids: Sequence[pulumi.Input[str]], router_tags: dict) -> list[Grant]:
    """What the active router of a pair may do on AWS, and nothing more: ReplaceRoute in the
    managed route tables, AssociateAddress of the stack's Elastic IPs with the two routers'
    interfaces, and the read-only Describes the takeover and its periodic check need (the
    route tables, the addresses, and, to settle a split brain, which instance an interface
    belongs to and whether it runs healthy; to hold back beside a router without the pair,
    the instances at the other router's address and the user data of the stack's routers,
    the instances carrying every one of `router_tags`: userdata/router.sh); each in the stack's region only.

    Service Authorization Reference, "Actions, resources, and condition keys for Amazon EC2":
    ReplaceRoute takes a route-table resource; AssociateAddress an elastic-ip resource and
    the network-interface (or instance) it is associated with, and every resource a request
    names must be allowed, so listing the two routers' interfaces confines the takeover to
    them (it associates by NetworkInterfaceId and PrivateIpAddress: the console and tenants'
    addresses are secondary ones; it is granted no instance). The interfaces are listed
    for ReplaceRoute too, as its target. DescribeRouteTables, DescribeAddresses,
    DescribeNetworkInterfaces, DescribeInstanceStatus and DescribeInstances support no
    resource-level permission ("*"); DescribeInstanceAttribute takes an instance resource,
    confined here by the routers' tags (aws:ResourceTag/<key>). aws:RequestedRegion is a
    global condition key (IAM
    User Guide, "AWS global condition context keys")."""
    region = {"StringEquals": {"aws:RequestedRegion": aws.get_region().region}}
    interfaces = [ec2_arn("network-interface", i) for i in eni_ids]
    return [
        Grant(["ec2:ReplaceRoute"], [ec2_arn("route-table", t) for t in route_table_ids] + interfaces, region),
        Grant(["ec2:AssociateAddress"], [ec2_arn("elastic-ip", a) for a in allocation_ids] + interfaces, region),
        Grant(["ec2:DescribeRouteTables", "ec2:DescribeAddresses", "ec2:DescribeNetworkInterfaces",
               "ec2:DescribeInstanceStatus", "ec2:DescribeInstances"], ["*"], region),
        Grant(["ec2:DescribeInstanceAttribute"], [ec2_arn("instance", "*")], {"StringEquals": {
            **region["StringEquals"], **{f"aws:ResourceTag/{k}": v for k, v in sorted(router_tags.items())}}}),
    ]


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
