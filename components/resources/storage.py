"""EfsStorage: EFS for CloudStack's primary and secondary storage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.model import naming


@dataclass(frozen=True)
class EfsStorageArgs:
    stack: str
    zone_name: str
    throughput_mode: str  # elastic | provisioned (never bursting: credits run out)
    provisioned_mibps: int
    #: Pulumi `protect`: the file system holds VM disks and templates.
    protect: bool
    subnet_id: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    tags: dict = field(default_factory=dict)
    #: Root of the deployment's SSM parameters (naming.parameter_root); None: `/cloudstack-ec2/<stack>`.
    parameter_root: Optional[pulumi.Input[str]] = None


class EfsStorage(pulumi.ComponentResource):
    """An encrypted EFS file system with its mount target IN the CloudStack subnet (members
    reach it directly, system VMs through the router), automatic backups, and its DNS name
    published to SSM. The management server creates `/<zone>/primary` and `/<zone>/secondary`.

    Outputs: file_system_id, dns_name, primary_path, secondary_path.
    """

    def __init__(self, name: str, args: EfsStorageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:EfsStorage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        provisioned = args.throughput_mode == "provisioned"
        fs = aws.efs.FileSystem(
            f"{name}-fs", encrypted=True,
            # Elastic throughput needs General Purpose performance mode.
            performance_mode="generalPurpose", throughput_mode=args.throughput_mode,
            provisioned_throughput_in_mibps=args.provisioned_mibps if provisioned else None,
            tags={**tags, "Name": f"{name}-cloudstack"},
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        aws.efs.BackupPolicy(f"{name}-backup", file_system_id=fs.id,
                             backup_policy=aws.efs.BackupPolicyBackupPolicyArgs(status="ENABLED"), opts=child)
        mount_target = aws.efs.MountTarget(f"{name}-mount", file_system_id=fs.id, subnet_id=args.subnet_id,
                                           security_groups=[args.security_group_id], opts=child)
        parameter = aws.ssm.Parameter(
            f"{name}-dns", name=pulumi.Output.from_input(
                args.parameter_root if args.parameter_root is not None else naming.stack_prefix(args.stack)).apply(
                lambda root: naming.parameter_under(root, naming.PARAM_EFS_DNS)), type="String",
            value=fs.dns_name, description="EFS DNS name for CloudStack storage", tags=tags,
            # The name resolves only once the mount target exists.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[mount_target]))

        paths = naming.zone_paths(args.zone_name)
        self.file_system_id = fs.id
        # The name resolves only once the mount target exists: whoever mounts the
        # share through this output (the storage registration) waits for it. The
        # instances do not use it (they poll the SSM parameter), so they are not held.
        self.dns_name = pulumi.Output.all(fs.dns_name, mount_target.id).apply(lambda v: v[0])
        self.mount_target_ip = mount_target.ip_address
        self.primary_path = paths["primary"]
        self.secondary_path = paths["secondary"]
        self.dns_parameter = parameter.name
        self.register_outputs({
            "file_system_id": self.file_system_id,
            "dns_name": self.dns_name,
            "mount_target_ip": self.mount_target_ip,
            "primary_path": self.primary_path,
            "secondary_path": self.secondary_path,
        })
