"""MulticastDomain and OverlayRouter under Pulumi mocks."""

from __future__ import annotations

import ipaddress

import pytest

from components.model import catalog
from components.resources import router as router_module

SG = "aws:ec2/securityGroup:SecurityGroup"

TGW = "aws:ec2transitgateway/transitGateway:TransitGateway"
ATTACHMENT = "aws:ec2transitgateway/vpcAttachment:VpcAttachment"
DOMAIN = "aws:ec2transitgateway/multicastDomain:MulticastDomain"
ASSOCIATION = "aws:ec2transitgateway/multicastDomainAssociation:MulticastDomainAssociation"
ROUTE = "aws:ec2/route:Route"


def test_transit_gateway_has_multicast_support(dev):
    [tgw] = dev.of_type(TGW)
    assert tgw.inputs["multicastSupport"] == "enable"
    assert dev.outputs["transitGatewayId"] == tgw.id


def test_vpc_attachment_on_the_cloudstack_subnet(dev):
    [tgw] = dev.of_type(TGW)
    [att] = dev.of_type(ATTACHMENT)
    subnet = dev.get("aws:ec2/subnet:Subnet", "underlay-cloudstack")
    vpc = dev.get("aws:ec2/vpc:Vpc", "underlay-vpc")
    assert att.inputs["transitGatewayId"] == tgw.id
    assert att.inputs["vpcId"] == vpc.id
    assert att.inputs["subnetIds"] == [subnet.id]


def test_multicast_domain_with_igmpv2_and_no_static_sources(dev):
    [tgw] = dev.of_type(TGW)
    [domain] = dev.of_type(DOMAIN)
    assert domain.inputs["transitGatewayId"] == tgw.id
    assert domain.inputs["igmpv2Support"] == "enable"
    # A domain cannot have IGMPv2 and static sources both on.
    assert domain.inputs["staticSourcesSupport"] == "disable"
    assert dev.outputs["multicastDomainId"] == domain.id


def test_cloudstack_subnet_associated_with_the_domain(dev):
    [att] = dev.of_type(ATTACHMENT)
    [domain] = dev.of_type(DOMAIN)
    [assoc] = dev.of_type(ASSOCIATION)
    subnet = dev.get("aws:ec2/subnet:Subnet", "underlay-cloudstack")
    assert assoc.inputs["transitGatewayMulticastDomainId"] == domain.id
    assert assoc.inputs["transitGatewayAttachmentId"] == att.id
    assert assoc.inputs["subnetId"] == subnet.id


# --- OverlayRouter ---------------------------------------------------------------------------

ENI = "aws:ec2/networkInterface:NetworkInterface"
EIP = "aws:ec2/eip:Eip"


def test_router_is_a_nitro_instance_with_source_destination_check_off(dev):
    router = dev.instance("router")
    facts = catalog.instance_facts(router.inputs["instanceType"])
    assert facts is not None and facts.hypervisor == "nitro"
    # The router runs on an interface of its own, whose check is off (and nothing that EC2
    # refuses beside it is set on the instance: the offline runner's rules).
    eni = dev.get(ENI, "router-eni")
    assert router.inputs["primaryNetworkInterface"]["networkInterfaceId"] == eni.id
    assert eni.inputs["sourceDestCheck"] is False
    assert "sourceDestCheck" not in router.inputs and "subnetId" not in router.inputs
    # Only the router forwards: every other instance keeps the check.
    assert all(dev.placement(i)["sourceDestCheck"] is True for i in dev.instances() if i.name != "router")


def test_router_interface_is_in_the_dedicated_subnet_with_the_member_and_router_groups(dev):
    eni = dev.get(ENI, "router-eni")
    assert eni.inputs["subnetId"] == dev.get("aws:ec2/subnet:Subnet", "underlay-cloudstack").id
    assert sorted(eni.inputs["securityGroups"]) == sorted(
        [dev.get(SG, "underlay-member-sg").id, dev.get(SG, "underlay-router-sg").id])
    # Two more private addresses, which EC2 picks: the console address and the tenants'.
    assert eni.inputs["privateIpsCount"] == 2


def test_router_has_an_elastic_ip_in_the_outputs(dev):
    eip = dev.get(EIP, "router-eip")
    eni = dev.get(ENI, "router-eni")
    assert (eip.inputs["networkInterface"], eip.inputs["associateWithPrivateIp"]) == (eni.id, eni.state["private_ip"])
    assert dev.outputs["router"]["publicIp"] == eip.state["public_ip"]
    assert dev.outputs["router"]["privateIp"] == eni.state["private_ip"] == dev.instance("router").state["private_ip"]
    assert dev.outputs["uiUrl"] == f"http://{eip.state['public_ip']}:8080/client/"


def test_console_address_is_the_interfaces_second_address_with_its_own_elastic_ip(dev):
    eni = dev.get(ENI, "router-eni")
    console = dev.get(EIP, "router-console-eip")
    second, _third = sorted(set(eni.state["private_ips"]) - {eni.state["private_ip"]}, key=ipaddress.IPv4Address)
    assert (console.inputs["networkInterface"], console.inputs["associateWithPrivateIp"]) == (eni.id, second)
    assert console.state["public_ip"] != dev.get(EIP, "router-eip").state["public_ip"]
    assert dev.outputs["router"]["consolePrivateIp"] == second
    assert dev.outputs["router"]["consolePublicIp"] == console.state["public_ip"]
    # The router forwards what arrives for that address (overlay-router.sh CONSOLE_ADDRESS) ...
    assert dev.boot_env(dev.instance("router"))["CONSOLE_ADDRESS"] == second
    # ... and console URLs name its Elastic IP (consoleproxy.url.domain, set at the
    # management server's boot).
    assert dev.boot_env(dev.instance("management"))["CSEC2_CONSOLE_ADDRESS"] == console.state["public_ip"]
    igw = dev.get("aws:ec2/internetGateway:InternetGateway", "underlay-igw")
    assert igw.urn in console.dependencies


def test_tenants_leave_with_the_interfaces_third_address_and_its_own_elastic_ip(dev):
    eni = dev.get(ENI, "router-eni")
    tenant = dev.get(EIP, "router-tenant-eip")
    console, third = sorted(set(eni.state["private_ips"]) - {eni.state["private_ip"]}, key=ipaddress.IPv4Address)
    assert (tenant.inputs["networkInterface"], tenant.inputs["associateWithPrivateIp"]) == (eni.id, third)
    others = {dev.get(EIP, name).state["public_ip"] for name in ("router-eip", "router-console-eip")}
    assert tenant.state["public_ip"] not in others
    assert dev.outputs["router"]["tenantPublicIp"] == tenant.state["public_ip"]
    # The router source-NATs system VMs and tenants to it (overlay-router.sh TENANT_ADDRESS).
    env = dev.boot_env(dev.instance("router"))
    assert (env["TENANT_ADDRESS"], env["CONSOLE_ADDRESS"]) == (third, console)
    # tenantPrivateDns false (the default): tenants' DNS from the router's own recursion.
    assert env["TENANT_DNS"] == "recurse"
    assert dev.get("aws:ec2/internetGateway:InternetGateway", "underlay-igw").urn in tenant.dependencies


def test_secondary_addresses_are_the_lower_for_the_console_and_the_higher_for_tenants():
    assert router_module._secondary_addresses("10.0.0.20", ["10.0.0.20", "10.0.0.9", "10.0.0.100"]) == (
        "10.0.0.9", "10.0.0.100")  # by address, not as text ("10.0.0.100" < "10.0.0.9")
    with pytest.raises(ValueError, match="expected exactly 2"):
        router_module._secondary_addresses("10.0.0.20", ["10.0.0.20", "10.0.0.9"])


@pytest.mark.parametrize("previous,console,tenant", [
    ("10.0.0.100", "10.0.0.100", "10.0.0.9"),  # EC2 added the tenants' address below the console's
    ("10.0.0.9", "10.0.0.9", "10.0.0.100"),  # ... or above it
    ("10.0.0.77", "10.0.0.9", "10.0.0.100"),  # the interface no longer has it: lower, higher
    (None, "10.0.0.9", "10.0.0.100")])  # a new stack
def test_the_console_address_of_the_last_update_stays_the_console_address(previous, console, tenant):
    addresses = ["10.0.0.20", "10.0.0.100", "10.0.0.9"]
    assert router_module._secondary_addresses("10.0.0.20", addresses, previous) == (console, tenant)


@pytest.mark.parametrize("old", ["higher", "lower"])
def test_on_a_deployed_stack_the_console_elastic_ip_stays_on_the_routers_console_address(dev, old):
    """A stack deployed when the interface had the console address only: raising its count
    adds an address, below or above it; the console Elastic IP and the running router's
    CONSOLE_ADDRESS stay on the old one, the tenants get the new one."""
    from components.cli import offline
    from components.model import deployed
    from components.program import build
    from tests.unit.conftest import PROJECT

    eni = dev.get(ENI, "router-eni")
    lower, higher = sorted(set(eni.state["private_ips"]) - {eni.state["private_ip"]}, key=ipaddress.IPv4Address)
    console, new = (higher, lower) if old == "higher" else (lower, higher)
    previous = {deployed.OUTPUT: {**dev.outputs[deployed.OUTPUT], "bootScripts": deployed.BOOT_SCRIPTS},
                "router": {**dev.outputs["router"], "consolePrivateIp": console}}
    run = offline.run_offline(build, dev.config, project=PROJECT, stack="dev",
                              region=str(dev.config.get("aws:region", "us-east-1")),
                              subnet_cidrs={"cloudstack": str(dev.settings.cloudstack_subnet_cidr)},
                              previous_outputs=previous)
    by_name = {(r.type, r.name): r for r in run.registrations}
    later_eni = by_name[(ENI, "router-eni")]
    # The offline EC2 picks the same addresses as on the first run (so the order is the test's).
    assert sorted(later_eni.state["private_ips"]) == sorted(eni.state["private_ips"])
    assert by_name[(EIP, "router-console-eip")].inputs["associateWithPrivateIp"] == console
    assert by_name[(EIP, "router-tenant-eip")].inputs["associateWithPrivateIp"] == new
    assert run.outputs["router"]["consolePrivateIp"] == console
    env = dev.boot_env(by_name[("aws:ec2/instance:Instance", "router")])
    assert (env["CONSOLE_ADDRESS"], env["TENANT_ADDRESS"]) == (console, new)


def test_console_forwards_parameter_is_created_empty_and_left_to_the_registration(dev):
    parameter = dev.get("aws:ssm/parameter:Parameter", "router-console-forwards")
    assert parameter.inputs["name"] == dev.outputs["deployment"]["parameterRoot"] + "/console-forwards"
    assert plain(parameter.inputs["value"]) == "none"
    # The registration writes the console proxy's address into it: Pulumi never resets it.
    assert "value" in parameter.ignore_changes


def test_every_overlay_route_goes_to_the_routers_eni(dev):
    eni = dev.get(ENI, "router-eni").id
    assert dev.instance("router").state["primary_network_interface_id"] == eni
    overlay = [r for r in dev.of_type(ROUTE) if r.inputs["destinationCidrBlock"] == str(dev.settings.overlay_cidr)]
    assert len(overlay) == 3
    assert {r.inputs["networkInterfaceId"] for r in overlay} == {eni}
    assert all(r.parent_urn == dev.get("cloudstack-ec2:index:OverlayRouter", "router").urn for r in overlay)


def test_router_boot_script_is_the_overlay_gateway_and_forwards_8080_to_management(dev):
    env = dev.boot_env(dev.instance("router"))
    router_ip = dev.outputs["router"]["overlayIp"]
    management_ip = dev.outputs["managementServer"]["overlayIp"]
    assert env["OVERLAY_ROLE"] == "router"
    assert env["OVERLAY_ADDRESS"] == f"{router_ip}/{dev.settings.overlay_cidr.prefixlen}"
    # The UI/API's forward is a parameter the router polls (userdata/router.sh), not its
    # user data, which a running router never reads again: the load balancer can take it away.
    assert "ROUTER_DNAT" not in env
    parameter = dev.get("aws:ssm/parameter:Parameter", "router-ui-forward")
    assert parameter.inputs["name"] == dev.outputs["deployment"]["parameterRoot"] + "/ui-forward"
    assert plain(parameter.inputs["value"]) == f"tcp:8080:{management_ip}:8080"
    assert "value" not in (parameter.ignore_changes or [])
    assert env["VPC_CIDR"] == str(dev.settings.vpc_cidr)
    # The router's cloudbr0 has no gateway: its default route stays on the VPC.
    assert "OVERLAY_GATEWAY" not in env


# --- Elastic IP and internet gateway -----------------------------------------------------

def test_elastic_ip_waits_for_the_internet_gateway(dev):
    # pulumi-aws Eip docs: the EIP may need the IGW first; the dependency also deletes
    # the EIP before the gateway on destroy.
    eip = dev.get("aws:ec2/eip:Eip", "router-eip")
    igw = dev.get("aws:ec2/internetGateway:InternetGateway", "underlay-igw")
    assert igw.urn in eip.dependencies


def test_elastic_ip_in_an_existing_vpc_has_no_gateway_to_wait_for(deploy):
    d = deploy(vpcId="vpc-0e0e0e0e0e0e0e0e1", cloudstackSubnetId="subnet-0c0c0c0c0c0c0c0c1",
               dbSubnetIds=["subnet-0d0d0d0d0d0d0d0d1", "subnet-0d0d0d0d0d0d0d0d2"],
               routeTableIds=["rtb-0a0a0a0a0a0a0a0a1", "rtb-0a0a0a0a0a0a0a0a2"])
    assert d.of_type("aws:ec2/internetGateway:InternetGateway") == []
    assert d.get("aws:ec2/eip:Eip", "router-eip")


def test_in_an_existing_vpc_tenants_are_refused_the_gateway_endpoint_services(deploy):
    d = deploy(vpcId="vpc-0e0e0e0e0e0e0e0e1", cloudstackSubnetId="subnet-0c0c0c0c0c0c0c0c1",
               dbSubnetIds=["subnet-0d0d0d0d0d0d0d0d1", "subnet-0d0d0d0d0d0d0d0d2"],
               routeTableIds=["rtb-0a0a0a0a0a0a0a0a1", "rtb-0a0a0a0a0a0a0a0a2"])
    # The offline runner's stand-ins for the region's S3 and DynamoDB prefix lists.
    assert d.boot_env(d.instance("router"))["TENANT_REFUSED"] == "198.51.100.0/25 203.0.113.0/25"
    asked = [args.get("name") for token, args in d.run.invokes if token == "aws:ec2/getPrefixList:getPrefixList"]
    assert asked == ["com.amazonaws.us-east-1.s3", "com.amazonaws.us-east-1.dynamodb"]
    assert sorted(args["routeTableId"] for token, args in d.run.invokes
                  if token == "aws:ec2/getRouteTable:getRouteTable") == ["rtb-0a0a0a0a0a0a0a0a1", "rtb-0a0a0a0a0a0a0a0a2"]


def test_in_a_new_vpc_nothing_public_is_refused_to_tenants(dev):
    assert "TENANT_REFUSED" not in dev.boot_env(dev.instance("router"))
# --- services offered from VMs (vmForwards) ------------------------------------------------

def plain(value):
    """pulumi_aws marks a Parameter's value secret: the mocks see it wrapped."""
    return value["value"] if isinstance(value, dict) else value


FORWARDS = ["tcp:2222:10.100.128.5:22@203.0.113.0/24,198.51.100.7/32", "udp:5353:10.100.128.9:53@anywhere"]


def test_router_group_admits_exactly_the_declared_forwards(deploy, dev):
    d = deploy(vmForwards=FORWARDS)
    before = {(r["protocol"], dev.ports(r)) for r in dev.ingress(dev.get(SG, "underlay-router-sg"))}
    rules = d.ingress(d.get(SG, "underlay-router-sg"))
    added = [r for r in rules if (r["protocol"], d.ports(r)) not in before]
    assert sorted((r["protocol"], d.ports(r), tuple(r["cidrBlocks"])) for r in added) == [
        ("tcp", (2222, 2222), ("203.0.113.0/24", "198.51.100.7/32")),
        ("udp", (5353, 5353), ("0.0.0.0/0",)),
    ]
    assert len(rules) == len(dev.ingress(dev.get(SG, "underlay-router-sg"))) + 2


def test_forwards_reach_the_router_through_its_parameter_not_its_user_data(deploy, dev):
    d = deploy(vmForwards=FORWARDS)
    parameter = d.get("aws:ssm/parameter:Parameter", "router-forwards")
    # Under the deployment's own root, like every parameter (naming.parameter_root).
    assert parameter.inputs["name"] == d.outputs["deployment"]["parameterRoot"] + "/router-forwards"
    assert plain(parameter.inputs["value"]) == "tcp:2222:10.100.128.5:22 udp:5353:10.100.128.9:53"
    assert plain(dev.get("aws:ssm/parameter:Parameter", "router-forwards").inputs["value"]) == "none"
    # The router instance is declared exactly as without forwards: a change never replaces it.
    assert d.instance("router").inputs == dev.instance("router").inputs


def test_the_registration_publishes_the_console_proxy_to_the_routers_parameter(dev):
    [publisher] = [r for r in dev.registrations if r.type == "pulumi-python:dynamic/cloudstack:ConsoleForwards"]
    parameter = dev.get("aws:ssm/parameter:Parameter", "router-console-forwards")
    assert publisher.inputs["parameter_name"] == parameter.inputs["name"]
    # consoleproxy.url.domain is checked against the console address's Elastic IP.
    assert publisher.inputs["console_address"] == dev.get(EIP, "router-console-eip").state["public_ip"]
    # After the zone is enabled (the console proxy runs only then).
    assert ("pulumi-python:dynamic/cloudstack:ZoneEnablement", "registration-zone-enable") in \
        dev.depends_on_names(publisher)


def test_the_router_forwards_consoles_only_into_the_system_vms_public_range(dev):
    # The range CloudStack reserves for system VMs (forsystemvms): a stale console forward can
    # never reach a tenant (docs/consoles.md).
    env = dev.boot_env(dev.instance("router"))
    [system_range] = [r for r in dev.registrations if r.type == "pulumi-python:dynamic/cloudstack:PublicIpRange"
                      and r.inputs.get("forsystemvms") is True]
    assert env["CONSOLE_RANGE"] == f"{system_range.inputs['startip']}-{system_range.inputs['endip']}"
    # ... the range the management servers' console forwards publisher writes into the parameter
    # (userdata/console-forwards.sh), and the registration's console forwards check
    [publisher] = [r for r in dev.registrations if r.type == "pulumi-python:dynamic/cloudstack:ConsoleForwards"]
    assert dev.boot_env(dev.instance("management"))["CSEC2_SYSTEM_PUBLIC_RANGE"] == env["CONSOLE_RANGE"] \
        == publisher.inputs["system_public_range"]


def test_tenant_private_dns_makes_the_routers_resolver_forward_to_the_vpc_resolver(deploy):
    private = deploy(tenantPrivateDns=True)
    assert private.boot_env(private.instance("router"))["TENANT_DNS"] == "forward"
