"""Operations tier: the alarms, their SNS topic and the dashboard of the deployment, over
every instance, the database and the file system (the logs and the agent's configuration
are the data tier's: instances write them from their first boot)."""

from __future__ import annotations

from dataclasses import dataclass

from components.program.compute import Compute
from components.program.context import Context
from components.program.control_plane import ControlPlane
from components.program.data import Data
from components.resources.alarms import DeploymentAlarms, DeploymentAlarmsArgs


@dataclass(frozen=True)
class Operations:
    """The operations tier's components."""

    alarms: DeploymentAlarms


def declare_operations(ctx: Context, data: Data, control: ControlPlane, compute: Compute) -> Operations:
    """The alarms (to an SNS topic, alarmEmail subscribed) and the dashboard."""
    settings = ctx.settings
    return Operations(DeploymentAlarms("alarms", DeploymentAlarmsArgs(
        stack=ctx.stack, zone=settings.zone_name, key_arn=data.logs.key_arn,
        management_log_group=data.logs.log_groups["management"], router_id=control.router.instance_id,
        management_id=control.management.instance_id,
        host_ids=[inst.id for _, inst in sorted(compute.hosts.instances.items())],
        db_identifier=data.database.identifier, db_storage_gb=settings.db_allocated_storage_gb,
        efs_id=data.storage.file_system_id, email=settings.alarm_email, tags=ctx.tags,
        router_pair_log_group=data.logs.log_groups["router"] if settings.router_count == 2 else None,
        more_instances=[*((f"router-{i}", f"overlay router {i}", m.instance.id)
                          for i, m in enumerate(control.router.members) if i),
                        *((f"management-{i}", f"management server {i}", m.instance_id)
                          for i, m in enumerate(control.management_servers) if i)])))
