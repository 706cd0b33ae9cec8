"""The whole deployment, declared from the validated settings and the IP plan.

`__main__.py` and the offline `plan` command both call `build()`: one program,
whether it runs under `pulumi up` or under mocks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_aws as aws
import pulumi_random as random
from pulumi.runtime.sync_await import _sync_await

from components.model import catalog
from components.model import cloudmonkey
from components.model import deployed as deployed_state
from components.model import naming
from components.model import regions
from components.model import tenantlimits
from components.boot import userdata
from components.resources.bootstore import BootScriptBucket, BootScriptBucketArgs
from components.program.config import load_settings, lookup_instance_type, region_zones
from components.resources.database import RdsCloudDb, RdsCloudDbArgs
from components.resources.database import db_identifier as database_identifier
from components.resources.hosts import KvmHostPool, KvmHostPoolArgs, existing_host_types
from components.model.hosttypes import HostTypes, plan_host_types
from components.model.ipplan import IpPlan
from components.resources.management import ManagementServer, ManagementServerArgs
from components.resources.multicast import MulticastDomain, MulticastDomainArgs
from components.resources.node import InstanceSpec
from components.registration import GlobalSetting, RegistrationSpec, Timeouts, build_spec, clusters_for
from components.registration.component import (CloudStackRegistration, CloudStackRegistrationArgs, stack_aws_identity,
                                               stack_aws_problems)
from components.resources.router import OverlayRouter, OverlayRouterArgs
from components.model.settings import Problem, Settings, SettingsError, choose_availability_zones
from components.resources.storage import EfsStorage, EfsStorageArgs
from components.resources.underlay import CLOUDSTACK_UI_PORT, Underlay, UnderlayArgs

UBUNTU_AMI_NAMES = {
    "noble": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
    "jammy": "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*",
}
#: The user the management server logs in as on the KVM hosts, with its own SSH
#: key (key-only root login; see userdata/kvm-host.sh).
KVM_HOST_USER = "root"
DOMAIN = "cloudstack.internal"


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


def overlay_config(settings: Settings, plan: IpPlan, address, role: str, **extra) -> userdata.OverlayConfig:
    return userdata.OverlayConfig(
        role=role, vxlan_id=settings.vxlan_id, vxlan_group=str(settings.multicast_group),
        overlay_address=plan.overlay_interface(address), overlay_mtu=settings.overlay_mtu,
        vpc_cidr=str(settings.vpc_cidr),
        overlay_gateway=None if role == "router" else str(plan.router), **extra)


@dataclass(frozen=True)
class Deployment:
    settings: Settings
    #: Stack outputs (values may be Outputs).
    outputs: dict[str, Any]
    #: What the registration registers (None when registerCloud is false).
    registration: Optional[RegistrationSpec]
    #: Each host's instance type (existing hosts keep theirs) and cluster index.
    host_types: Optional[HostTypes] = None
    host_clusters: tuple[int, ...] = ()


def pulumi_program() -> None:
    """The Pulumi program: `__main__.py` runs it, and so can the Automation API
    (`auto.create_or_select_stack(stack_name=..., project_name="cloudstack-ec2",
    program=pulumi_program)`). Bad settings end the run with the complete list of
    problems and no stack trace, before any resource is declared."""
    try:
        deployment = build()
    except SettingsError as error:
        raise pulumi.RunError(str(error)) from None
    for name, value in deployment.outputs.items():
        pulumi.export(name, value)


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
    for key in (deployed_state.OUTPUT, deployed_state.LEGACY_PARAMETER_OUTPUT):
        # Synchronously, as the SDK's own data-source calls are: the checks must end the
        # run before any resource is declared.
        details = _sync_await(ref.get_output_details(key))
        value = details.value if details.value is not None else details.secret_value
        if value is not None:
            outputs[key] = value
    return deployed_state.from_outputs(outputs)


def build() -> Deployment:
    """Validate the stack's settings (raises SettingsError), then declare everything."""
    settings = load_settings()
    previous = read_deployed()
    problems, warnings = regions.check_region(aws.get_region().region)
    problems += deployed_state.check_changes(settings, previous)
    warnings += deployed_state.upgrade_warnings(previous)
    problems += stack_aws_problems()
    if problems:
        raise SettingsError(problems)
    for warning in warnings:
        pulumi.log.warn(warning)
    # On every run after the first the AZ is the one the dedicated subnet was created in.
    zones = availability_zones(settings, check_existing_network(settings) or previous.availability_zone)
    stack = pulumi.get_stack()
    host_types = plan_host_types(settings.host_count, settings.host_instance_type,
                                 existing_host_types(naming.PROJECT, stack, previous.parameter_root),
                                 lookup_instance_type)
    return declare(settings, stack, zones, previous, host_types)


def declare(settings: Settings, stack: str, zones: tuple[str, str],
            previous: deployed_state.Deployed = deployed_state.Deployed(),
            host_types: Optional[HostTypes] = None) -> Deployment:
    plan = settings.ip_plan()
    if host_types is None:  # no host exists yet: every host of hostInstanceType
        host_types = plan_host_types(settings.host_count, settings.host_instance_type, {}, lookup_instance_type)
    host_clusters = tuple(clusters_for(settings.host_count, settings.hosts_per_cluster, host_types.types))
    tags = {"Project": naming.PROJECT, "Stack": stack}
    region = aws.get_region().region
    if previous.parameter_root == naming.stack_prefix(stack):
        # Deployed before the deployment id existed: renaming its parameters would
        # replace the ones the management server wrote at boot.
        prefix: pulumi.Input[str] = previous.parameter_root
        db_identifier = None  # its database keeps the name pulumi-aws gave it
    else:
        # Unique per deployment, kept in the stack's state (naming.parameter_root).
        deployment_id = random.RandomId("deployment-id", byte_length=naming.DEPLOYMENT_ID_BYTES)
        prefix = deployment_id.hex.apply(lambda hex_id: naming.parameter_root(stack, hex_id))
        db_identifier = deployment_id.hex.apply(lambda hex_id: database_identifier(stack, hex_id))
    prefix = pulumi.Output.from_input(prefix)
    az = zones[0]
    db_azs = list(zones)
    ami = settings.ami_id or ubuntu_ami(settings.ubuntu_codename)
    management_ip = plan.management_servers[0]

    underlay = Underlay("underlay", UnderlayArgs(
        vpc_cidr=str(settings.vpc_cidr), cloudstack_subnet_cidr=str(settings.cloudstack_subnet_cidr),
        db_subnet_cidrs=[str(n) for n in settings.db_subnet_cidrs], overlay_cidr=str(settings.overlay_cidr),
        admin_cidrs=[str(n) for n in settings.admin_cidrs], management_overlay_ip=str(management_ip),
        availability_zone=az, db_availability_zones=db_azs,
        vpc_id=settings.vpc_id, cloudstack_subnet_id=settings.cloudstack_subnet_id,
        db_subnet_ids=settings.db_subnet_ids, route_table_ids=settings.route_table_ids,
        system_range_cidrs=[str(n) for n in plan.system_range.cidrs()],
        vm_forward_rules=[(f.protocol, f.port, [str(n) for n in f.sources],
                           f"VM service {f.protocol} {f.port} to {f.target}:{f.target_port} (vmForwards)")
                          for f in settings.vm_forwards], tags=tags))

    multicast = MulticastDomain("multicast", MulticastDomainArgs(
        vpc_id=underlay.vpc_id, cloudstack_subnet_id=underlay.cloudstack_subnet_id, tags=tags,
        timeout_minutes=settings.transit_gateway_timeout_minutes))

    database = RdsCloudDb("database", RdsCloudDbArgs(
        stack=stack, engine_version=settings.db_engine_version, instance_class=settings.db_instance_class,
        allocated_storage_gb=settings.db_allocated_storage_gb, multi_az=settings.db_multi_az,
        backup_retention_days=settings.db_backup_retention_days,
        deletion_protection=settings.deletion_protection, skip_final_snapshot=settings.db_skip_final_snapshot,
        subnet_ids=underlay.db_subnet_ids, security_group_id=underlay.db_sg_id, parameter_root=prefix,
        major_version_upgrade=deployed_state.upgrading_database(settings, previous),
        identifier=db_identifier, log_retention_days=settings.db_log_retention_days,
        management_servers=len(plan.management_servers), tags=tags,
        availability_zone=database_zone(settings, az),
        timeout_minutes=settings.db_timeout_minutes))

    storage = EfsStorage("storage", EfsStorageArgs(
        stack=stack, zone_name=settings.zone_name, throughput_mode=settings.efs_throughput_mode,
        provisioned_mibps=settings.efs_provisioned_mibps, protect=settings.deletion_protection,
        subnet_id=underlay.cloudstack_subnet_id, security_group_id=underlay.efs_sg_id, tags=tags,
        parameter_root=prefix))

    # Boot stage 2: the role scripts, fetched by each instance at boot (docs/boot.md).
    boot_scripts = BootScriptBucket("boot-scripts", BootScriptBucketArgs(
        stack=stack, objects=userdata.boot_objects(), tags=tags))

    def instance(instance_type: str, security_group_ids: list, boot_role: str) -> InstanceSpec:
        # An instance fetches its role script as soon as it boots: the object must exist.
        return InstanceSpec(instance_type=instance_type, ami_id=ami, subnet_id=underlay.cloudstack_subnet_id,
                            security_group_ids=security_group_ids, root_volume_gb=settings.root_volume_gb,
                            wait_for=[multicast.association, boot_scripts.objects[boot_role]])

    member_sgs = [underlay.member_sg_id]
    refused = tenant_refused(settings, region)
    router = OverlayRouter("router", OverlayRouterArgs(
        instance=instance(settings.router_instance_type, [underlay.member_sg_id, underlay.router_sg_id], "router"),
        render_user_data=lambda console_ip, tenant_ip: pulumi.Output.all(
            prefix, boot_scripts.bucket_name, console_ip, tenant_ip).apply(
            lambda v: userdata.render_router_user_data(userdata.RouterBoot(
            aws_region=region, prefix=v[0], fqdn=f"router.{DOMAIN}", boot_bucket=v[1],
            overlay=overlay_config(settings, plan, plan.router, "router", router_dnat=(
                f"tcp:{CLOUDSTACK_UI_PORT}:{management_ip}:{CLOUDSTACK_UI_PORT}",),
                storage_cidr=str(settings.cloudstack_subnet_cidr),
                tenant_vpc_access=tuple(str(n) for n in settings.tenant_vpc_access_cidrs),
                console_address=v[2], console_range=str(plan.system_public_range),
                tenant_address=v[3], tenant_dns="forward" if settings.tenant_private_dns else "recurse",
                tenant_refused=refused)))),
        overlay_cidr=str(settings.overlay_cidr), route_table_ids=underlay.route_table_ids, tags=tags,
        internet_gateway=underlay.internet_gateway, boot_script_arn=boot_scripts.object_arn("router"),
        parameter_root=prefix, vm_forwards=[f.dnat for f in settings.vm_forwards]))

    def management_user_data(secret_arns: dict) -> str:
        return userdata.render_management_user_data(userdata.ManagementBoot(
            aws_region=region, prefix=secret_arns["parameter_root"], fqdn=f"management.{DOMAIN}",
            boot_bucket=secret_arns["boot_bucket"],
            overlay=overlay_config(settings, plan, management_ip, "member"),
            secrets=userdata.ManagementSecrets(
                db_master=secret_arns["db_master"], db_cloud=secret_arns["db_cloud"],
                cloudstack_keys=secret_arns["keys"], admin=secret_arns["admin"], api_keys=secret_arns["api_keys"]),
            cloudstack_version=settings.cloudstack_version, os_codename=settings.ubuntu_codename,
            zone_name=settings.zone_name, console_address=secret_arns["console_address"]))

    management = ManagementServer("management", ManagementServerArgs(
        stack=stack, instance=instance(settings.management_instance_type, member_sgs, "management"),
        db_master_secret_arn=database.master_secret_arn, render_user_data=management_user_data, tags=tags,
        boot_script_arn=boot_scripts.object_arn("management"), boot_bucket=boot_scripts.bucket_name,
        parameter_root=prefix, console_address=router.console_public_ip))

    def host_user_data(index: int) -> pulumi.Output[str]:
        return pulumi.Output.all(prefix, boot_scripts.bucket_name).apply(
            lambda v: userdata.render_kvm_host_user_data(userdata.KvmHostBoot(
            aws_region=region, prefix=v[0], fqdn=f"kvm-host-{index}.{DOMAIN}", boot_bucket=v[1],
            overlay=overlay_config(settings, plan, plan.hosts[index], "member"),
            cloudstack_version=settings.cloudstack_version, os_codename=settings.ubuntu_codename,
            host_user=KVM_HOST_USER)))

    host_base = instance(settings.host_instance_type, member_sgs, "kvm-host")
    hosts = KvmHostPool("kvm-host", KvmHostPoolArgs(
        stack=stack, instance=host_base,
        boot_script_arn=boot_scripts.object_arn("kvm-host"),
        overlay_ips={i: str(a) for i, a in enumerate(plan.hosts)},
        render_user_data=host_user_data, tags=tags, timeout_minutes=settings.host_timeout_minutes,
        parameter_root=prefix,
        host_instances={i: dataclasses.replace(host_base, instance_type=t,
                                               nested_virtualization=host_types.nested_virtualization(i))
                        for i, t in enumerate(host_types.types)}))

    api_url = (pulumi.Output.from_input(settings.api_endpoint) if settings.api_endpoint
               else pulumi.Output.concat("http://", router.public_ip, f":{CLOUDSTACK_UI_PORT}/client/api"))
    spec = None
    if settings.register_cloud:
        minutes = settings.registration_timeout_minutes * 60
        spec = build_spec(plan=plan, zone_name=settings.zone_name, host_username=KVM_HOST_USER,
                          hosts_per_cluster=settings.hosts_per_cluster, overlay_mtu=settings.overlay_mtu,
                          timeouts=Timeouts(secret_wait=minutes, api_wait=minutes,
                                            system_vms=settings.system_vm_wait_minutes * 60),
                          host_instance_types=host_types.types,
                          extra_settings=cross_cluster_migration(host_types),
                          allow_destroy_with_vms=settings.destroy_with_running_vms)
        CloudStackRegistration("registration", CloudStackRegistrationArgs(
            spec=spec,
            api_url=api_url, api_keys_secret_id=management.api_keys_secret_id, region=region,
            efs_dns=storage.dns_name, host_dependencies=hosts.instances,
            depends_on=[management.instance, router],
            aws_identity=stack_aws_identity(), host_ready_prefix=prefix.apply(lambda r: f"{r}/{naming.HOST_READY}"),
            console_forwards_parameter=router.console_forwards_parameter, console_address=router.console_public_ip,
            guarded=[underlay, multicast, database, storage, router, management, hosts]))

    cost = catalog.estimate(settings, host_types.types)
    outputs = {
        "uiUrl": pulumi.Output.concat("http://", router.public_ip, f":{CLOUDSTACK_UI_PORT}/client/"),
        "apiEndpoint": api_url,
        "zoneName": settings.zone_name,
        "overlayCidr": str(settings.overlay_cidr),
        "router": {"overlayIp": str(plan.router), "privateIp": router.private_ip, "publicIp": router.public_ip,
                   "instanceId": router.instance_id, "consolePrivateIp": router.console_private_ip,
                   "consolePublicIp": router.console_public_ip, "tenantPublicIp": router.tenant_public_ip},
        "managementServer": {"overlayIp": str(management_ip), "privateIp": management.private_ip,
                             "instanceId": management.instance_id},
        "hosts": {str(i): {"overlayIp": str(plan.hosts[i]), "privateIp": inst.private_ip, "instanceId": inst.id,
                           "cluster": host_clusters[i], "instanceType": host_types.types[i]}
                  for i, inst in hosts.instances.items()},
        "secretArns": {**{k.replace("-", "_"): v for k, v in management.secret_arns.items()},
                       "db_master": database.master_secret_arn},
        "databaseEndpointParameter": database.endpoint_parameter,
        "efsFileSystemId": storage.file_system_id,
        "transitGatewayId": multicast.transit_gateway_id,
        "multicastDomainId": multicast.multicast_domain_id,
        "registered": spec is not None,
        "estimatedHourlyCostUsd": round(cost.hourly, 2),
        "estimatedMonthlyCostUsd": round(cost.monthly, 0),
        # Read back on the next run (components.model.deployed): what is chosen once or only grows.
        deployed_state.OUTPUT: deployed_state.record(settings, az, prefix),
        "cloudmonkey": pulumi.Output.all(api_url, management.api_keys_secret_arn).apply(
            lambda args: cloudmonkey.cmk_profile(stack, args[0], args[1], region)),
    }
    return Deployment(settings, outputs, spec, host_types, host_clusters)


def cross_cluster_migration(host_types: HostTypes) -> tuple[GlobalSetting, ...]:
    """With hosts of more than one instance type (planned, or still running: a scale-in
    removing the last hosts of a type must not flip the setting before they are gone),
    VMs must not live-migrate between clusters: the clusters then differ in CPU model,
    and a host-passthrough guest moved to another CPU fails or crashes. A scale-in that
    empties a cluster then stops with the VMs named (nothing lost) instead."""
    if not host_types.mixed:
        return ()
    return (GlobalSetting("migrate.vm.across.clusters", "false",
                          "the clusters run different instance types (CPU models): host-passthrough guests "
                          "must not live-migrate between them"),)
