"""Data tier: the cloud database (RDS MySQL), the shared storage (EFS), the bucket of
boot scripts and the instances' log groups, everything the instances read, mount or write
once they boot."""

from __future__ import annotations

from dataclasses import dataclass

from components import boot
from components.model import deployed as deployed_state
from components.program.context import Context
from components.program.lookups import database_zone
from components.program.network import Network
from components.resources.bootstore import BootScriptBucket, BootScriptBucketArgs
from components.resources.database import RdsCloudDb, RdsCloudDbArgs
from components.resources.monitoring import DeploymentLogs, DeploymentLogsArgs
from components.resources.storage import EfsStorage, EfsStorageArgs


@dataclass(frozen=True)
class Data:
    """The data tier's components."""

    database: RdsCloudDb
    storage: EfsStorage
    boot_scripts: BootScriptBucket
    #: The instances' CloudWatch log groups, their key and the agent's configurations.
    logs: DeploymentLogs


def declare_data(ctx: Context, network: Network) -> Data:
    """The database, the file system and the boot-script bucket, in the underlay's subnets."""
    settings, underlay = ctx.settings, network.underlay
    database = RdsCloudDb("database", RdsCloudDbArgs(
        stack=ctx.stack, engine_version=settings.db_engine_version, instance_class=settings.db_instance_class,
        allocated_storage_gb=settings.db_allocated_storage_gb, multi_az=settings.db_multi_az,
        backup_retention_days=settings.db_backup_retention_days,
        deletion_protection=settings.deletion_protection, skip_final_snapshot=settings.db_skip_final_snapshot,
        subnet_ids=underlay.db_subnet_ids, security_group_id=underlay.db_sg_id, parameter_root=ctx.prefix,
        major_version_upgrade=deployed_state.upgrading_database(settings, ctx.previous),
        identifier=ctx.db_identifier, log_retention_days=settings.db_log_retention_days,
        management_servers=len(ctx.plan.management_servers), tags=ctx.tags,
        availability_zone=database_zone(settings, ctx.zone),
        timeout_minutes=settings.db_timeout_minutes))
    storage = EfsStorage("storage", EfsStorageArgs(
        stack=ctx.stack, zone_name=settings.zone_name, throughput_mode=settings.efs_throughput_mode,
        provisioned_mibps=settings.efs_provisioned_mibps, protect=settings.deletion_protection,
        subnet_id=underlay.cloudstack_subnet_id, security_group_id=underlay.efs_sg_id, tags=ctx.tags,
        parameter_root=ctx.prefix))
    # Boot stage 2: the role scripts, fetched by each instance at boot (docs/boot.md).
    boot_scripts = BootScriptBucket("boot-scripts", BootScriptBucketArgs(
        stack=ctx.stack, objects=boot.boot_objects(), tags=ctx.tags))
    logs = DeploymentLogs("logs", DeploymentLogsArgs(
        stack=ctx.stack, parameter_root=ctx.prefix, retention_days=settings.log_retention_days,
        router_pair=settings.router_count == 2, tags=ctx.tags))
    return Data(database, storage, boot_scripts, logs)
