"""The whole deployment, declared from the validated settings and the IP plan, tier by tier.

`__main__.py` and the offline `plan` command both call `build()`: one program,
whether it runs under `pulumi up` or under mocks. `declare()` runs the tiers in
order; each is a module of this package whose function takes the tiers before it
and returns its own (a small frozen dataclass):

- `context`: what every tier shares (settings, IP plan, tags, region, parameter root, AMI,
  the hosts' types and clusters);
- `network`: Underlay, MulticastDomain;
- `data`: RdsCloudDb, EfsStorage, BootScriptBucket;
- `front_end`: UiLoadBalancer (when the UI/API is behind the load balancer);
- `control_plane`: OverlayRouter, ManagementServer;
- `compute`: KvmHostPool;
- `registration`: CloudStackRegistration (and the API URL);
- `operations`: DeploymentAlarms (alarms, their SNS topic, the dashboard), RecoveryAlarms (the
  routers' and management servers' system status check alarms, to that topic);
- `outputs`: the stack outputs.

`lookups` holds the AWS data-source look-ups and the read of the last deployment;
`instances` what every instance shares; `config` reads and validates the stack's config.

Imports Pulumi, `components.model`, `components.boot`, `components.resources` and
`components.registration`; never `components.cli`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from components.model import deployed as deployed_state
from components.model import naming
from components.model import frontend
from components.model import regions
from components.model import upgrades
from components.model.settings.frontend import certificate_region_problems
from components.model.hosttypes import HostTypes, plan_host_types
from components.model.settings import Problem, Settings, SettingsError
from components.program.compute import declare_compute
from components.program.config import load_settings, lookup_instance_type
from components.program.context import context
from components.program.control_plane import declare_control_plane
from components.program.data import declare_data
from components.program.front_end import attach_management_servers, declare_front_end
from components.program.lookups import availability_zones, check_existing_network, read_deployed, upgrade_progress
from components.program.network import declare_network
from components.program.operations import declare_operations
from components.program.outputs import stack_outputs
from components.program.registration import cross_cluster_migration, declare_registration
from components.registration import RegistrationSpec
from components.registration.component import stack_aws_problems
from components.resources.hosts import existing_host_types

__all__ = ["Deployment", "build", "cross_cluster_migration", "declare", "pulumi_program", "read_deployed"]


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


def build() -> Deployment:
    """Validate the stack's settings (raises SettingsError), then declare everything."""
    settings = load_settings()
    previous = read_deployed()
    region = aws.get_region().region
    problems, warnings = regions.check_region(region)
    problems += certificate_region_problems(settings.ui_certificate_arn, region)
    problems += deployed_state.check_changes(settings, previous)
    warnings += deployed_state.upgrade_warnings(previous, settings.cloudstack_version)
    upgrade_problems, upgrade_notes = unfinished_upgrade(previous, settings.cloudstack_version)
    problems += upgrade_problems
    warnings += upgrade_notes
    warnings += deployed_state.router_count_warnings(settings, previous, pulumi.get_stack())
    warnings += frontend.running_server_warnings(previous, settings.ui_behind_load_balancer,
                                                 [str(n) for n in settings.ui_subnet_cidrs])
    problems += stack_aws_problems()
    if problems:
        raise SettingsError(problems)
    for warning in warnings:
        pulumi.log.warn(warning)
    # On every run after the first the AZ is the one the dedicated subnet was created in.
    zones = availability_zones(settings, check_existing_network(settings) or previous.availability_zone)
    stack = pulumi.get_stack()
    existing_hosts = existing_host_types(naming.PROJECT, stack, previous.parameter_root)
    for warning in deployed_state.scale_down_warnings(settings, previous, existing_hosts):
        pulumi.log.warn(warning)
    host_types = plan_host_types(settings.host_count, settings.host_instance_type, existing_hosts,
                                 lookup_instance_type)
    return declare(settings, stack, zones, previous, host_types)


def unfinished_upgrade(previous: deployed_state.Deployed, requested: str) -> tuple[list[Problem], list[str]]:
    """What the record of an unfinished CloudStack upgrade says of `requested` (cloudstackVersion):
    a problem when the upgrade stopped a server and this update asks for another version than its
    target (upgrades.check_progress), a warning when its record is cleared (upgrades.progress_warning).
    Checked here, before anything is declared; the upgrade resource applies the same rule."""
    if not previous.exists:
        return [], []
    progress = upgrade_progress(previous.parameter_root)
    installed = previous.cloudstack_version
    problem = upgrades.check_progress(progress, installed, requested, upgrades.snapshot_prefix(pulumi.get_stack()),
                                      f"{previous.parameter_root}/{naming.CLOUDSTACK_UPGRADE}")
    warning = upgrades.progress_warning(progress, installed, requested)
    return [problem] if problem else [], [warning] if warning else []


def declare(settings: Settings, stack: str, zones: tuple[str, str],
            previous: deployed_state.Deployed = deployed_state.Deployed(),
            host_types: Optional[HostTypes] = None) -> Deployment:
    """Every resource of the deployment, tier by tier. `zones`: (instances' AZ, database's
    second AZ); `previous`: what the last update deployed; `host_types` None: no host
    exists yet, every host is of hostInstanceType."""
    ctx = context(settings, stack, zones, previous, host_types)
    network = declare_network(ctx)
    data = declare_data(ctx, network)
    front = declare_front_end(ctx, network)
    control = declare_control_plane(ctx, network, data, front)
    attach_management_servers(front, [m.private_ip for m in control.management_servers])
    compute = declare_compute(ctx, network, data, control.management.anchor_key_arn)
    registration = declare_registration(ctx, network, data, control, compute, front)
    operations = declare_operations(ctx, data, control, compute)
    outputs = {**stack_outputs(ctx, network, data, control, compute, registration, front),
               "dashboardUrl": operations.alarms.dashboard_url, "alarmTopicArn": operations.alarms.topic_arn}
    return Deployment(settings, outputs, registration.spec, ctx.host_types, ctx.host_clusters)
