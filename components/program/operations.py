"""Operations tier: the alarms, their SNS topic and the dashboard of the deployment, over
every instance, the database and the file system, and EC2's recovery of the routers and the
management servers, whose alarms notify the same topic (the logs and the agent's
configuration are the data tier's: instances write them from their first boot)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.model import alarms, recovery
from components.program.compute import Compute
from components.program.context import Context
from components.program.control_plane import ControlPlane
from components.program.data import Data
from components.resources.alarms import DeploymentAlarms, DeploymentAlarmsArgs
from components.resources.recovery import RecoveryAlarms, RecoveryAlarmsArgs, RecoveryTarget


@dataclass(frozen=True)
class Operations:
    """The operations tier's components."""

    alarms: DeploymentAlarms
    recovery: RecoveryAlarms


def declare_operations(ctx: Context, data: Data, control: ControlPlane, compute: Compute) -> Operations:
    """The alarms (to an SNS topic, alarmEmail subscribed), the dashboard, then the routers' and
    management servers' system status check alarms, which notify that topic."""
    settings = ctx.settings
    # The instances after the first router and the first management server, in
    # alarms.more_instances order (the cost estimate counts the same list).
    more_ids = [m.instance.id for m in control.router.members[1:]] + \
        [m.instance_id for m in control.management_servers[1:]]
    deployment = DeploymentAlarms("alarms", DeploymentAlarmsArgs(
        stack=ctx.stack, zone=settings.zone_name, key_arn=data.logs.key_arn,
        management_log_group=data.logs.log_groups["management"], router_id=control.router.instance_id,
        management_id=control.management.instance_id,
        host_ids=[inst.id for _, inst in sorted(compute.hosts.instances.items())],
        db_identifier=data.database.identifier, db_storage_gb=settings.db_allocated_storage_gb,
        efs_id=data.storage.file_system_id, email=settings.alarm_email, tags=ctx.tags,
        router_pair_log_group=data.logs.log_groups["router"] if settings.router_count == 2 else None,
        more_instances=[(key, label, instance_id) for (key, label), instance_id in zip(
            alarms.more_instances(len(control.router.members), len(control.management_servers)), more_ids)]))
    return Operations(deployment, declare_recovery(ctx, control, deployment.topic_arn))


def declare_recovery(ctx: Context, control: ControlPlane, topic_arn: pulumi.Output[str]) -> RecoveryAlarms:
    """Each router's and management server's system status check alarm: EC2's recover action
    where the type supports it, and the alarm topic (RecoveryAlarms)."""
    settings = ctx.settings
    instance_ids = [m.instance.id for m in control.router.members] + \
        [m.instance_id for m in control.management_servers]
    targets = [RecoveryTarget(name, instance_id, instance_type) for (name, instance_type), instance_id in zip(
        recovery.targets(settings.router_instance_type, len(control.router.members),
                         settings.management_instance_type, len(control.management_servers)),
        instance_ids)]
    found = RecoveryAlarms("recovery", RecoveryAlarmsArgs(targets=targets, region=ctx.region,
                                                          notification_topic_arn=topic_arn, tags=ctx.tags))
    for target in targets:
        if target.name in found.not_recovered:
            pulumi.log.warn(recovery.not_recovered_warning(target.name, target.instance_type))
    return found
