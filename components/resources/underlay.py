"""Underlay: the VPC side of the design — VPC, the dedicated subnet, DB subnets, routes, security groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.model import routeraccess

#: The Transit Gateway sends its IGMP membership queries from 0.0.0.0.
IGMP_QUERIER = "0.0.0.0/32"
IGMP_PROTOCOL = "2"
VXLAN_PORT = 4789
CLOUDSTACK_UI_PORT = routeraccess.CLOUDSTACK_UI_PORT
MYSQL_PORT = 3306
NFS_PORT = 2049
#: Members and the router reach package mirrors, AWS APIs and the VPC.
ALLOW_ALL_EGRESS = aws.ec2.SecurityGroupEgressArgs(protocol="-1", from_port=0, to_port=0, cidr_blocks=["0.0.0.0/0"])


@dataclass(frozen=True)
class UnderlayArgs:
    vpc_cidr: str
    cloudstack_subnet_cidr: str
    db_subnet_cidrs: Sequence[str]
    overlay_cidr: str
    admin_cidrs: Sequence[str]
    #: Every management server's overlay address (the database admits these only).
    management_overlay_ips: Sequence[str]
    #: AZ of the CloudStack subnet; the DB subnets use it and the next AZ.
    availability_zone: str
    db_availability_zones: Sequence[str]
    #: Existing VPC mode: ids instead of new resources.
    vpc_id: str = ""
    cloudstack_subnet_id: str = ""
    db_subnet_ids: Sequence[str] = ()
    route_table_ids: Sequence[str] = ()
    #: The pod's reserved system range as CIDRs (components/model/ipplan.AddressRange.cidrs):
    #: the only overlay addresses, besides the members' own, that may reach EFS.
    system_range_cidrs: Sequence[str] = ()
    #: vmForwards as (protocol, router port, source CIDRs, description): the router's
    #: group admits each forwarded port from its sources only.
    vm_forward_rules: Sequence[tuple[str, int, Sequence[str], str]] = ()
    #: routerCount 2: the routers' group admits VRRP from its own members (the other router).
    router_pair: bool = False
    #: The router forwards the UI/API (False: it is behind the load balancer, and the
    #: router's 8080 is the console websocket's only; routeraccess.router_ingress `ui`).
    ui_through_router: bool = True
    tags: dict = field(default_factory=dict)


class Underlay(pulumi.ComponentResource):
    """VPC (or an existing one), the DEDICATED CloudStack subnet, DB subnets in two AZs,
    route tables and the security groups of members, router, database and EFS.

    Outputs: vpc_id, cloudstack_subnet_id, db_subnet_ids, route_table_ids (every table
    that must route the overlay to the router), member/router/db/efs security group ids.
    """

    vpc_id: pulumi.Output[str]
    cloudstack_subnet_id: pulumi.Output[str]
    db_subnet_ids: pulumi.Output[list]
    route_table_ids: list[pulumi.Output[str]]
    member_sg_id: pulumi.Output[str]
    router_sg_id: pulumi.Output[str]
    db_sg_id: pulumi.Output[str]
    efs_sg_id: pulumi.Output[str]

    def __init__(self, name: str, args: UnderlayArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:Underlay", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        if args.vpc_id:
            self.vpc_id = pulumi.Output.from_input(args.vpc_id)
            self.cloudstack_subnet_id = pulumi.Output.from_input(args.cloudstack_subnet_id)
            self.db_subnet_ids = pulumi.Output.from_input(list(args.db_subnet_ids))
            self.route_table_ids = [pulumi.Output.from_input(r) for r in args.route_table_ids]
            #: The existing VPC's own gateway is not ours to order against.
            self.internet_gateway: Optional[aws.ec2.InternetGateway] = None
        else:
            self._create_network(name, args, child, tags)

        self._create_security_groups(name, args, child, tags)
        self.register_outputs({
            "vpc_id": self.vpc_id,
            "cloudstack_subnet_id": self.cloudstack_subnet_id,
            "db_subnet_ids": self.db_subnet_ids,
            "route_table_ids": self.route_table_ids,
            "member_sg_id": self.member_sg_id,
            "router_sg_id": self.router_sg_id,
            "db_sg_id": self.db_sg_id,
            "efs_sg_id": self.efs_sg_id,
        })

    def _create_network(self, name, args: UnderlayArgs, child, tags) -> None:
        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.vpc_cidr, enable_dns_support=True,
                          enable_dns_hostnames=True, tags={**tags, "Name": f"{name}-vpc"}, opts=child)
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-igw"},
                                      opts=child)
        # The dedicated subnet: only CloudStack instances and the EFS mount target.
        # No public IPs by default: only the router gets one (its Elastic IP), and
        # the other members reach the internet through the router's NAT.
        # The AZ is chosen at creation (the first that offers every instance type);
        # a later, different choice (AWS adding metal capacity elsewhere) must not
        # replace the subnet and everything in it.
        keep_az = pulumi.ResourceOptions(parent=self, ignore_changes=["availability_zone"])
        subnet = aws.ec2.Subnet(f"{name}-cloudstack", vpc_id=vpc.id, cidr_block=args.cloudstack_subnet_cidr,
                                availability_zone=args.availability_zone, map_public_ip_on_launch=False,
                                tags={**tags, "Name": f"{name}-cloudstack-dedicated"}, opts=keep_az)
        # Every route is a standalone Route: a table with inline routes owns its whole
        # route list and would delete the overlay route OverlayRouter adds to it.
        public_rt = aws.ec2.RouteTable(f"{name}-cloudstack-rt", vpc_id=vpc.id,
                                       tags={**tags, "Name": f"{name}-cloudstack"}, opts=child)
        aws.ec2.Route(f"{name}-cloudstack-internet", route_table_id=public_rt.id,
                      destination_cidr_block="0.0.0.0/0", gateway_id=igw.id, opts=child)
        aws.ec2.RouteTableAssociation(f"{name}-cloudstack-rta", subnet_id=subnet.id, route_table_id=public_rt.id,
                                      opts=child)
        # The database subnets have no internet route; their replies to overlay
        # addresses must go back through the router (the overlay route, added by
        # OverlayRouter once its ENI exists).
        db_rt = aws.ec2.RouteTable(f"{name}-db-rt", vpc_id=vpc.id, tags={**tags, "Name": f"{name}-db"}, opts=child)
        db_subnets = []
        for i, (cidr, az) in enumerate(zip(args.db_subnet_cidrs, args.db_availability_zones)):
            s = aws.ec2.Subnet(f"{name}-db-{i}", vpc_id=vpc.id, cidr_block=cidr, availability_zone=az,
                               map_public_ip_on_launch=False, tags={**tags, "Name": f"{name}-db-{i}"}, opts=keep_az)
            aws.ec2.RouteTableAssociation(f"{name}-db-{i}-rta", subnet_id=s.id, route_table_id=db_rt.id, opts=child)
            db_subnets.append(s)
        self.vpc_id = vpc.id
        #: The Elastic IP waits for it (pulumi-aws Eip docs): created after, deleted before.
        self.internet_gateway = igw
        self.cloudstack_subnet_id = subnet.id
        self.db_subnet_ids = pulumi.Output.all(*[s.id for s in db_subnets])
        # The VPC's main table too: any subnet the user adds later answers overlay
        # addresses through the router instead of dropping the replies.
        self.route_table_ids = [public_rt.id, db_rt.id, vpc.main_route_table_id]

    def _create_security_groups(self, name, args: UnderlayArgs, child, tags) -> None:
        member_sg = aws.ec2.SecurityGroup(
            f"{name}-member-sg", vpc_id=self.vpc_id,
            description="CloudStack overlay members (VTEPs): IGMP queries and VXLAN",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    description="IGMP membership queries from the Transit Gateway",
                    protocol=IGMP_PROTOCOL, from_port=0, to_port=0, cidr_blocks=[IGMP_QUERIER]),
                # Multicast through the Transit Gateway keeps the sender's address as
                # its source, and AWS accepts no security group as the source of this
                # rule (Transit Gateway Guide, "Multicast routing": "You can't specify a
                # security group as the source of the UDP inbound rule"). One /32 rule
                # per member would exceed the default 60 inbound rules per group at 60
                # members (VPC quotas), so the dedicated subnet, which holds only overlay
                # members, is admitted; each host also takes VXLAN only on its underlay
                # device (userdata/kvm-host.sh).
                aws.ec2.SecurityGroupIngressArgs(
                    description="VXLAN from the other overlay members (dedicated subnet)",
                    protocol="udp", from_port=VXLAN_PORT, to_port=VXLAN_PORT,
                    cidr_blocks=[args.cloudstack_subnet_cidr]),
            ],
            egress=[ALLOW_ALL_EGRESS],
            tags={**tags, "Name": f"{name}-member"}, opts=child)

        # The router's own group. Because its source/destination check is off, this
        # group also filters everything FORWARDED into the overlay from the VPC and the
        # internet: components/model/routeraccess.py says what it admits, and why.
        router_ingress = [
            aws.ec2.SecurityGroupIngressArgs(description=r.description, protocol=r.protocol,
                                             from_port=r.from_port, to_port=r.to_port, cidr_blocks=list(r.cidrs))
            for r in routeraccess.router_ingress(args.vpc_cidr, args.admin_cidrs, args.vm_forward_rules,
                                                  args.ui_through_router)]
        if args.router_pair:
            # Only the two routers carry this group, so a rule whose source is the group itself
            # admits exactly the other router's interface (VPC User Guide, "Security group
            # rules": a security group as the source admits the network interfaces it is
            # attached to). Its primary address is the one keepalived sends from
            # (unicast_src_ip); the VPC's other instances and the overlay never reach it.
            router_ingress.append(aws.ec2.SecurityGroupIngressArgs(
                description="VRRP adverts from the other router of the pair", protocol=str(routeraccess.VRRP_PROTOCOL),
                from_port=0, to_port=0, self=True))
        router_sg = aws.ec2.SecurityGroup(
            f"{name}-router-sg", vpc_id=self.vpc_id,
            description="CloudStack overlay router: UI/API, consoles, vmForwards; never 8096 or 8250",
            ingress=router_ingress,
            egress=[ALLOW_ALL_EGRESS],
            tags={**tags, "Name": f"{name}-router"}, opts=child)

        # Routing scheme: the management server reaches the database THROUGH the
        # router, keeping its overlay address as source (the router NATs only what
        # leaves the VPC). The packets arrive from the router's ENI, so a rule naming
        # the management server's group would never match them; admit exactly the
        # management servers' overlay addresses.
        db_sg = aws.ec2.SecurityGroup(
            f"{name}-db-sg", vpc_id=self.vpc_id, description="CloudStack database: MySQL from the management server only",
            ingress=[aws.ec2.SecurityGroupIngressArgs(
                description="MySQL from the management server overlay address (via the router)",
                protocol="tcp", from_port=MYSQL_PORT, to_port=MYSQL_PORT,
                cidr_blocks=[f"{ip}/32" for ip in args.management_overlay_ips])],
            tags={**tags, "Name": f"{name}-db"}, opts=child)

        efs_ingress = [
            # The mount target is in the dedicated subnet: members mount it
            # directly from their own ENI and address.
            aws.ec2.SecurityGroupIngressArgs(
                description="NFS from overlay members (direct, same subnet)", protocol="tcp",
                from_port=NFS_PORT, to_port=NFS_PORT, security_groups=[member_sg.id]),
        ]
        if args.system_range_cidrs:
            # System VMs (secondary storage VM) live on the overlay and come through
            # the router with their overlay addresses. Only the pod's system range:
            # the rest of the overlay (the public range above all) is tenants', and
            # primary storage holds every tenant's disks.
            efs_ingress.append(aws.ec2.SecurityGroupIngressArgs(
                description="NFS from system VMs (pod system range, via the router)", protocol="tcp",
                from_port=NFS_PORT, to_port=NFS_PORT, cidr_blocks=list(args.system_range_cidrs)))
        efs_sg = aws.ec2.SecurityGroup(
            f"{name}-efs-sg", vpc_id=self.vpc_id, description="CloudStack EFS: NFS from members and system VMs",
            ingress=efs_ingress,
            tags={**tags, "Name": f"{name}-efs"}, opts=child)

        self.member_sg_id = member_sg.id
        self.router_sg_id = router_sg.id
        self.db_sg_id = db_sg.id
        self.efs_sg_id = efs_sg.id
