"""Underlay under Pulumi mocks: the VPC side of the design, as the real program declares it.

Each test's name states the requirement it pins (README: "What it builds", "Isolation");
every assertion reads what the program sent to the engine (inputs) or what the mocks made
of it (ids, state).
"""

from __future__ import annotations

import ipaddress

import pytest

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
IGW = "aws:ec2/internetGateway:InternetGateway"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
RTA = "aws:ec2/routeTableAssociation:RouteTableAssociation"
ROUTE = "aws:ec2/route:Route"
SG = "aws:ec2/securityGroup:SecurityGroup"
EIP = "aws:ec2/eip:Eip"
INSTANCE = "aws:ec2/instance:Instance"
SG_RULE_TYPES = ("aws:ec2/securityGroupRule:SecurityGroupRule",
                 "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")

EXISTING = {
    "vpcId": "vpc-0e0e0e0e0e0e0e0e1",
    "cloudstackSubnetId": "subnet-0c0c0c0c0c0c0c0c1",
    "dbSubnetIds": ["subnet-0d0d0d0d0d0d0d0d1", "subnet-0d0d0d0d0d0d0d0d2"],
    "routeTableIds": ["rtb-0a0a0a0a0a0a0a0a1", "rtb-0a0a0a0a0a0a0a0a2"],
}


def table_of_subnet(d, subnet) -> str:
    """Id of the route table associated with `subnet` (explicit association)."""
    tables = [a.inputs["routeTableId"] for a in d.of_type(RTA) if a.inputs.get("subnetId") == subnet.id]
    assert len(tables) == 1, f"subnet {subnet.name} has {len(tables)} route table associations"
    return tables[0]


def routes_in(d, table_id: str) -> list:
    return [r for r in d.of_type(ROUTE) if r.inputs.get("routeTableId") == table_id]


def comment_before(code: str) -> str:
    """The comment lines right above `code` in components/resources/underlay.py (the WHY of a rule)."""
    import inspect

    from components.resources import underlay

    source = inspect.getsource(underlay)
    assert source.count(code) == 1, f"{code!r} not found once in components/resources/underlay.py"
    lines = source[:source.index(code)].splitlines()
    comment = []
    for line in reversed(lines[:-1]):  # the last one is the indentation of `code`
        if not line.strip().startswith("#"):
            break
        comment.insert(0, line.strip().lstrip("#").strip())
    return " ".join(comment)


def sg(d, suffix: str):
    return d.get(SG, f"underlay-{suffix}")


# --- VPC and subnets -----------------------------------------------------------------------

def test_new_vpc_by_default_with_the_configured_cidr(dev):
    [vpc] = dev.of_type(VPC)
    assert vpc.inputs["cidrBlock"] == "10.0.0.0/16"
    # The VPC resolver (base + 2) is the zone's DNS: DNS support must stay on.
    assert vpc.inputs["enableDnsSupport"] is True
    assert all(s.inputs["vpcId"] == vpc.id for s in dev.of_type(SUBNET))


def test_dedicated_cloudstack_subnet_holds_every_instance_and_the_mount_target(dev):
    cs = dev.get(SUBNET, "underlay-cloudstack")
    assert cs.inputs["cidrBlock"] == str(dev.settings.cloudstack_subnet_cidr)
    # No automatic public addresses: only the router gets one, its Elastic IP.
    assert cs.inputs["mapPublicIpOnLaunch"] is False
    instances = dev.instances()
    assert {i.name for i in instances} >= {"router", "management", "kvm-host-0", "kvm-host-1", "kvm-host-2"}
    assert all(dev.placement(i)["subnetId"] == cs.id for i in instances)
    mount = dev.get("aws:efs/mountTarget:MountTarget", "storage-mount")
    assert mount.inputs["subnetId"] == cs.id
    # Dedicated: nothing else is placed there (the DB subnets are elsewhere).
    db_subnets = [s for s in dev.of_type(SUBNET) if s.name.startswith("underlay-db-")]
    cs_net = ipaddress.ip_network(cs.inputs["cidrBlock"])
    assert all(not ipaddress.ip_network(s.inputs["cidrBlock"]).overlaps(cs_net) for s in db_subnets)


def test_database_subnets_in_two_different_availability_zones(dev):
    db_subnets = sorted((s for s in dev.of_type(SUBNET) if s.name.startswith("underlay-db-")), key=lambda s: s.name)
    assert len(db_subnets) == 2
    azs = {s.inputs["availabilityZone"] for s in db_subnets}
    assert len(azs) == 2, f"DB subnets share an AZ: {azs}"
    assert [s.inputs["cidrBlock"] for s in db_subnets] == [str(n) for n in dev.settings.db_subnet_cidrs]
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in db_subnets)
    group = dev.get("aws:rds/subnetGroup:SubnetGroup", "database-subnets")
    assert sorted(group.inputs["subnetIds"]) == sorted(s.id for s in db_subnets)


# --- internet access -----------------------------------------------------------------------

def test_internet_gateway_and_default_route_on_the_cloudstack_subnets_table(dev):
    [vpc] = dev.of_type(VPC)
    [igw] = dev.of_type(IGW)
    assert igw.inputs["vpcId"] == vpc.id
    table = table_of_subnet(dev, dev.get(SUBNET, "underlay-cloudstack"))
    defaults = [r for r in routes_in(dev, table) if r.inputs.get("destinationCidrBlock") == "0.0.0.0/0"]
    assert [r.inputs.get("gatewayId") for r in defaults] == [igw.id]


def test_no_route_table_mixes_inline_routes_with_route_resources(dev):
    # The provider cannot manage inline routes and Route resources on one table: the
    # table's inline list would overwrite (delete) the overlay route on the next update.
    tables_with_routes = {r.inputs["routeTableId"] for r in dev.of_type(ROUTE)}
    for table in dev.of_type(ROUTE_TABLE):
        if table.id in tables_with_routes:
            assert not table.inputs.get("routes"), f"{table.name} has inline routes and Route resources"


def test_database_subnets_have_no_internet_route(dev):
    db = dev.get(SUBNET, "underlay-db-0")
    table = table_of_subnet(dev, db)
    assert table_of_subnet(dev, dev.get(SUBNET, "underlay-db-1")) == table
    assert all(r.inputs.get("destinationCidrBlock") != "0.0.0.0/0" for r in routes_in(dev, table))


def test_only_the_router_has_elastic_ips_and_no_instance_a_public_address(dev):
    eni = dev.get("aws:ec2/networkInterface:NetworkInterface", "router-eni")
    eips = dev.of_type(EIP)
    assert sorted(e.name for e in eips) == ["router-console-eip", "router-eip", "router-tenant-eip"]
    for eip in eips:
        assert eip.inputs["networkInterface"] == eni.id and eip.inputs["domain"] == "vpc"
    for inst in dev.instances():
        assert dev.placement(inst)["associatePublicIpAddress"] is False, inst.name
    assert dev.outputs["router"]["publicIp"] == dev.get(EIP, "router-eip").state["public_ip"]


# --- the overlay route ---------------------------------------------------------------------

def test_overlay_cidr_routed_to_the_router_eni_in_every_managed_route_table(dev):
    [vpc] = dev.of_type(VPC)
    eni = dev.instance("router").state["primary_network_interface_id"]
    managed = {t.id for t in dev.of_type(ROUTE_TABLE)} | {vpc.state["main_route_table_id"]}
    # The CloudStack subnet's, the DB subnets' (both associated) and the VPC main table.
    assert table_of_subnet(dev, dev.get(SUBNET, "underlay-cloudstack")) in managed
    assert table_of_subnet(dev, dev.get(SUBNET, "underlay-db-0")) in managed
    assert len(managed) == 3
    for table in managed:
        overlay = [r for r in routes_in(dev, table)
                   if r.inputs.get("destinationCidrBlock") == str(dev.settings.overlay_cidr)]
        assert len(overlay) == 1, f"route table {table}: {len(overlay)} overlay routes"
        assert overlay[0].inputs["networkInterfaceId"] == eni


# --- security groups -----------------------------------------------------------------------

def test_members_admit_igmp_queries_from_0_0_0_0_and_vxlan_from_the_dedicated_subnet(dev):
    rules = dev.ingress(sg(dev, "member-sg"))
    igmp = [r for r in rules if str(r["protocol"]) == "2"]
    assert len(igmp) == 1 and igmp[0]["cidrBlocks"] == ["0.0.0.0/32"]
    vxlan = [r for r in rules if r["protocol"] == "udp"]
    assert len(vxlan) == 1 and dev.ports(vxlan[0]) == (4789, 4789)
    # Multicast reaches members from the Transit Gateway, not from the sender's ENI:
    # a rule naming the members' group would not match flooded VXLAN.
    assert vxlan[0]["cidrBlocks"] == [str(dev.settings.cloudstack_subnet_cidr)]
    assert len(rules) == 2, f"members admit more than IGMP and VXLAN: {rules}"
    why = comment_before("aws.ec2.SecurityGroupIngressArgs(\n                    description=\"VXLAN")
    assert "Transit Gateway" in why and "sender" in why, why


def test_every_instance_is_a_member_and_the_router_also_has_the_router_group(dev):
    member, router_sg = sg(dev, "member-sg"), sg(dev, "router-sg")
    for inst in dev.instances():
        groups = dev.placement(inst)["vpcSecurityGroupIds"]
        assert member.id in groups, inst.name
        assert (router_sg.id in groups) == (inst.name == "router"), inst.name


@pytest.mark.parametrize("port", [8080, 80])
def test_router_admits_the_ui_and_console_ports_only_from_admin_cidrs_and_the_vpc(dev, port):
    all_rules = dev.ingress(sg(dev, "router-sg"))
    icmp = [r for r in all_rules if r["protocol"] == "icmp"]
    rules = [r for r in all_rules if r["protocol"] != "icmp"]
    # Besides the UI/API (8080) and the console page (80; its websocket is 8080 on the
    # console address): only ICMP type 3 code 4 (fragmentation needed), for path MTU discovery.
    assert [(dev.ports(r), r["cidrBlocks"]) for r in icmp] == [((3, 4), ["0.0.0.0/0"])]
    assert {dev.ports(r) for r in rules} == {(8080, 8080), (80, 80)}
    for rule in rules:
        assert rule["protocol"] == "tcp", rule
        assert not rule.get("securityGroups") and not rule.get("self")
    sources = {c for r in rules if dev.ports(r) == (port, port) for c in r["cidrBlocks"]}
    vpc = ipaddress.ip_network(str(dev.settings.vpc_cidr))
    wanted = {str(vpc), *(str(c) for c in dev.settings.admin_cidrs)}
    for cidr in wanted:
        net = ipaddress.ip_network(cidr)
        assert any(net.subnet_of(ipaddress.ip_network(s)) for s in sources), f"{cidr} cannot reach {port}"
    assert sources <= wanted, f"{port} open to more than the VPC and adminCidrs: {sources - wanted}"


@pytest.mark.parametrize("port", [8096, 8250, 22])
def test_no_group_admits_the_unauthenticated_api_agent_port_or_ssh(dev, port):
    for group in dev.of_type(SG):
        for rule in dev.ingress(group):
            low, high = dev.ports(rule)
            if rule["protocol"] in ("-1", "all"):
                pytest.fail(f"{group.name} admits all protocols: {rule}")
            if rule["protocol"] in ("tcp", "6"):
                assert not low <= port <= high, f"{group.name} admits TCP {port}: {rule}"
    for typ in SG_RULE_TYPES:
        assert dev.of_type(typ) == [], f"standalone {typ} escapes these checks"


def test_admin_cidrs_outside_the_vpc_get_their_own_rule(deploy):
    d = deploy(adminCidrs=["203.0.113.0/24"])
    sources = {c for r in d.ingress(d.get(SG, "underlay-router-sg")) if r["protocol"] == "tcp"
               for c in r["cidrBlocks"]}
    assert sources == {"203.0.113.0/24", "10.0.0.0/16"}


def test_database_admits_3306_only_from_the_management_servers_overlay_address(dev):
    rules = dev.ingress(sg(dev, "db-sg"))
    management_ip = dev.outputs["managementServer"]["overlayIp"]
    assert rules == [r for r in rules if r["protocol"] == "tcp"]
    assert len(rules) == 1
    assert dev.ports(rules[0]) == (3306, 3306)
    assert rules[0]["cidrBlocks"] == [f"{management_ip}/32"]
    assert not rules[0].get("securityGroups")
    # The routing scheme is why: the management server's packets arrive from the
    # router's ENI with the overlay source, so a group reference would never match.
    why = comment_before("db_sg = aws.ec2.SecurityGroup(")
    assert "overlay address" in why and "router" in why and "never match" in why, why
    db = dev.get("aws:rds/instance:Instance", "database-mysql")
    assert db.inputs["vpcSecurityGroupIds"] == [sg(dev, "db-sg").id]
    assert db.inputs["publiclyAccessible"] is False


def test_efs_admits_nfs_from_members_and_from_the_system_range_only(dev):
    rules = dev.ingress(sg(dev, "efs-sg"))
    assert all(r["protocol"] == "tcp" and dev.ports(r) == (2049, 2049) for r in rules)
    from_groups = [g for r in rules for g in r.get("securityGroups") or []]
    from_cidrs = [ipaddress.ip_network(c) for r in rules for c in r.get("cidrBlocks") or []]
    assert from_groups == [sg(dev, "member-sg").id]
    system = dev.settings.ip_plan().system_range
    # Exactly the system range: every address of it, and nothing else.
    assert sum(n.num_addresses for n in from_cidrs) == system.size
    assert all(n[0] in system and n[-1] in system for n in from_cidrs)
    mount = dev.get("aws:efs/mountTarget:MountTarget", "storage-mount")
    assert mount.inputs["securityGroups"] == [sg(dev, "efs-sg").id]


# --- existing VPC mode ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def existing(deploy):
    return deploy(**EXISTING)


def test_existing_vpc_mode_creates_no_network(existing):
    for typ in (VPC, SUBNET, IGW, ROUTE_TABLE, RTA):
        assert existing.of_type(typ) == [], f"existing VPC mode created {typ}"


def test_existing_vpc_mode_uses_the_given_ids(existing):
    vpc, subnet = EXISTING["vpcId"], EXISTING["cloudstackSubnetId"]
    assert all(g.inputs["vpcId"] == vpc for g in existing.of_type(SG))
    assert all(existing.placement(i)["subnetId"] == subnet for i in existing.instances())
    attachment = existing.get("aws:ec2transitgateway/vpcAttachment:VpcAttachment", "multicast-attachment")
    assert attachment.inputs["vpcId"] == vpc and attachment.inputs["subnetIds"] == [subnet]
    assert existing.get("aws:efs/mountTarget:MountTarget", "storage-mount").inputs["subnetId"] == subnet
    group = existing.get("aws:rds/subnetGroup:SubnetGroup", "database-subnets")
    assert group.inputs["subnetIds"] == EXISTING["dbSubnetIds"]


def test_existing_vpc_mode_routes_the_overlay_in_every_given_route_table(existing):
    eni = existing.instance("router").state["primary_network_interface_id"]
    routes = existing.of_type(ROUTE)
    assert sorted(r.inputs["routeTableId"] for r in routes) == sorted(EXISTING["routeTableIds"])
    for r in routes:
        assert r.inputs["destinationCidrBlock"] == str(existing.settings.overlay_cidr)
        assert r.inputs["networkInterfaceId"] == eni


# --- tenant isolation: no rule lets a tenant address reach EFS or the database ------------

def _admitted_overlay_addresses(d, rule):
    """The overlay addresses one ingress rule admits, as (first, last) ranges; the
    members' group admits only the instances' own ENI addresses (never overlay ones)."""
    overlay = ipaddress.ip_network(str(d.settings.overlay_cidr))
    for cidr in rule.get("cidrBlocks") or []:
        net = ipaddress.ip_network(cidr)
        if net.overlaps(overlay):
            yield max(net[0], overlay[0]), min(net[-1], overlay[-1])


@pytest.mark.parametrize("overrides", [{}, {"overlayCidr": "172.20.0.0/24"}, EXISTING],
                         ids=["default", "small-overlay", "existing-vpc"])
def test_no_rule_admits_a_tenant_address_to_efs_or_the_database(deploy, overrides):
    from components.model import ipplan

    d = deploy(**overrides)
    plan = d.settings.ip_plan()
    classes = plan.classes
    for suffix in ("efs-sg", "db-sg"):
        for rule in d.ingress(sg(d, suffix)):
            assert "0.0.0.0/0" not in (rule.get("cidrBlocks") or []), rule
            for first, last in _admitted_overlay_addresses(d, rule):
                # A range touching the public range admits a tenant's virtual router.
                assert last < plan.public_range.start or first > plan.public_range.end, (suffix, rule)
                # Both ends inside one contiguous class: every address between is in it.
                inside_system = first in classes.system and last in classes.system
                inside_infra = first in classes.infrastructure and last in classes.infrastructure
                assert inside_system or inside_infra, (suffix, rule, str(first), str(last))
                assert classes.classify(first) != ipplan.TENANT
                if suffix == "db-sg":
                    assert first == last and first in plan.management_servers, rule
