"""The program's AWS data-source look-ups and its read of the last deployment.

Each runs while the program is being built, before (or between) declarations: a
failed look-up, or one whose answer contradicts the settings, ends the run with a
SettingsError naming the key before anything is created.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_aws as aws
from pulumi.runtime.sync_await import _sync_await

from components.model import deployed as deployed_state
from components.model import naming
from components.model import regions
from components.model import tenantlimits
from components.model import upgrades
from components.model.settings import Problem, Settings, SettingsError, choose_availability_zones
from components.program.config import region_zones

#: Ubuntu codename -> the name pattern of Canonical's amd64 server AMIs of that release.
UBUNTU_AMI_NAMES = {
    "noble": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
    "jammy": "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*",
}


def ubuntu_ami(codename: str) -> str:
    """Canonical's newest Ubuntu AMI of `codename` in this region. Canonical publishes
    from a different account in each partition (regions.CANONICAL_AMI_OWNERS)."""
    partition = aws.get_partition().partition
    owner = regions.canonical_ami_owner(partition)
    if owner is None:
        raise SettingsError([Problem("amiId", "", f"Canonical publishes no Ubuntu AMIs in partition {partition}: "
                                     "set amiId to an Ubuntu AMI of this region")])
    return aws.ec2.get_ami(
        most_recent=True, owners=[owner],
        filters=[aws.ec2.GetAmiFilterArgs(name="name", values=[UBUNTU_AMI_NAMES[codename]]),
                 aws.ec2.GetAmiFilterArgs(name="architecture", values=["x86_64"]),
                 aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"])]).id


def check_existing_network(settings: Settings) -> str:
    """With an existing VPC, the dedicated subnet must be what the settings say it is.
    Returns its AZ ("" without an existing VPC)."""
    if not settings.uses_existing_vpc:
        return ""
    subnet = aws.ec2.get_subnet(id=settings.cloudstack_subnet_id)
    if subnet.cidr_block != str(settings.cloudstack_subnet_cidr):
        raise SettingsError([Problem("cloudstackSubnetCidr", str(settings.cloudstack_subnet_cidr),
                                     f"subnet {settings.cloudstack_subnet_id} is {subnet.cidr_block}; "
                                     "set cloudstackSubnetCidr to its real CIDR")])
    return subnet.availability_zone


def tenant_refused(settings: Settings, region: str) -> tuple[str, ...]:
    """With an existing VPC, the public destinations it sends elsewhere than the internet,
    which tenants must not reach with the VPC's identity (tenantlimits.refused_to_tenants):
    the gateway-endpoint services' regional prefix lists, and the static routes of
    routeTableIds to VPNs, transit gateways or peers. A VPN's propagated routes are not
    seen: the route table data source leaves them out (terraform-provider-aws,
    flattenDataSourceRoutes). A new VPC has neither: ()."""
    if not settings.uses_existing_vpc:
        return ()
    partition = aws.get_partition().partition
    prefixes = [c for name in tenantlimits.gateway_endpoint_prefix_list_names(region, partition)
                for c in aws.ec2.get_prefix_list(name=name).cidr_blocks]
    routes = []
    for table_id in settings.route_table_ids:
        for r in aws.ec2.get_route_table(route_table_id=table_id).routes:
            target = (r.gateway_id or r.transit_gateway_id or r.vpc_peering_connection_id or r.nat_gateway_id
                      or r.network_interface_id or r.vpc_endpoint_id or r.local_gateway_id or r.carrier_gateway_id
                      or r.core_network_arn or "other")
            routes.append((r.cidr_block, target))
    return tenantlimits.refused_to_tenants(prefixes, routes)


def database_zone(settings: Settings, management_zone: str) -> Optional[str]:
    """Where a single-AZ database goes: the management server's AZ, when the database's
    subnets cover it (new VPC: always; existing VPC: looked up). None: RDS chooses."""
    if settings.db_multi_az:
        return None  # AWS refuses a fixed AZ for Multi-AZ
    if settings.uses_existing_vpc:
        zones = {aws.ec2.get_subnet(id=s).availability_zone for s in settings.db_subnet_ids}
        if management_zone not in zones:
            pulumi.log.warn(f"dbSubnetIds are in {', '.join(sorted(zones))}, not in the management server's AZ "
                            f"{management_zone}: the database and the management server talk across AZs")
            return None
    return management_zone


def availability_zones(settings: Settings, existing_zone: str = "") -> tuple[str, str]:
    """The CloudStack subnet's AZ (offering every instance type) and the DB's second AZ."""
    zones = region_zones()
    types = sorted({settings.router_instance_type, settings.management_instance_type, settings.host_instance_type})
    offerings = aws.ec2.get_instance_type_offerings(
        location_type="availability-zone",
        filters=[aws.ec2.GetInstanceTypeOfferingsFilterArgs(name="instance-type", values=types)])
    offered: dict[str, set[str]] = {}
    for instance_type, zone in zip(offerings.instance_types, offerings.locations):
        offered.setdefault(instance_type, set()).add(zone)
    return choose_availability_zones(settings, zones, offered, existing_zone)


def read_deployed() -> deployed_state.Deployed:
    """What the stack's last completed update deployed: its own `deployment` output, read
    through a StackReference to this very stack (the engine answers it from the backend's
    last checkpoint; a stack never updated has no outputs)."""
    # DIY backends (local, S3) name every stack's organization "organization".
    name = f"{pulumi.get_organization() or 'organization'}/{pulumi.get_project()}/{pulumi.get_stack()}"
    ref = pulumi.StackReference(f"{pulumi.get_stack()}-previous-deployment", stack_name=name)
    outputs = {}
    for key in deployed_state.READ_OUTPUTS:
        # Synchronously, as the SDK's own data-source calls are: the checks must end the
        # run before any resource is declared.
        details = _sync_await(ref.get_output_details(key))
        value = details.value if details.value is not None else details.secret_value
        if value is not None:
            outputs[key] = value
    return deployed_state.from_outputs(outputs)


def load_balancer_subnet_cidrs(settings: Settings) -> tuple[str, ...]:
    """With an existing VPC, the CIDRs of the load balancer's subnets (uiSubnetIds), which
    must be two subnets of vpcId in two AZs (an Application Load Balancer needs two: Elastic
    Load Balancing User Guide, "Subnets for your load balancer") and none of the cloud's own."""
    subnets = [aws.ec2.get_subnet(id=s) for s in settings.ui_subnet_ids]
    problems = []
    own = {settings.cloudstack_subnet_id, *settings.db_subnet_ids}
    for subnet_id, subnet in zip(settings.ui_subnet_ids, subnets):
        if subnet.vpc_id != settings.vpc_id:
            problems.append(Problem("uiSubnetIds", list(settings.ui_subnet_ids),
                                    f"{subnet_id} is in {subnet.vpc_id}, not in vpcId {settings.vpc_id}"))
        if subnet_id in own:
            problems.append(Problem("uiSubnetIds", list(settings.ui_subnet_ids),
                                    f"{subnet_id} is the cloud's own (cloudstackSubnetId or dbSubnetIds); name two "
                                    "public subnets for the load balancer alone"))
    if len({s.availability_zone for s in subnets}) < 2:
        problems.append(Problem("uiSubnetIds", list(settings.ui_subnet_ids),
                                f"both subnets are in {subnets[0].availability_zone if subnets else '?'}; an "
                                "Application Load Balancer needs subnets in two AZs"))
    if problems:
        raise SettingsError(problems)
    return tuple(s.cidr_block for s in subnets)


def upgrade_progress(parameter_root: str) -> Optional[upgrades.Progress]:
    """The record of the last CloudStack upgrade's progress (`<parameter root>/upgrade/progress`,
    written by components/registration/upgrade.py), None when there is none or on a first run
    (`parameter_root` ""). Asked with GetParametersByPath on its own path, which holds it alone,
    without decryption (an absent parameter is an empty answer there, where GetParameter fails
    the whole run). A record at the name used before (naming.LEGACY_CLOUDSTACK_UPGRADE) is left
    to the upgrade resource, which applies the same rule to it. Raises SettingsError naming
    the parameter when its value is not such a record."""
    if not parameter_root:
        return None
    name = f"{parameter_root}/{naming.CLOUDSTACK_UPGRADE}"
    found = aws.ssm.get_parameters_by_path(path=f"{parameter_root}/{naming.UPGRADE_PATH}", with_decryption=False)
    values = dict(zip(found.names or [], found.values or []))
    try:
        return upgrades.Progress.parse(values.get(name, ""))
    except ValueError as e:
        raise SettingsError([Problem(upgrades.KEY, name, f"{e}; delete the parameter (aws ssm delete-parameter "
                                                         f"--name {name}) only if no upgrade is under way")]) from None
