"""RdsCloudDb: CloudStack's database on RDS MySQL, with CloudStack's settings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_random as random
from pulumi.output import UNKNOWN

from components.model import naming

MASTER_USERNAME = "csadmin"
#: The guide's my.cnf (4.5.4): max_connections is 350 per management server.
CONNECTIONS_PER_MANAGEMENT_SERVER = 350
#: CloudStack's own sql_mode (it sets the same on its JDBC sessions).
CLOUDSTACK_SQL_MODE = "STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
#: The CA that signs the database's server certificate, set explicitly so that it is the one
#: whose root the management servers' bundle (the region's RDS bundle, docs/boot.md) holds.
#: RDS User Guide, "Using SSL/TLS to encrypt a connection to a DB instance or cluster":
#: rds-ca-rsa2048-g1 (RSA 2048, SHA256; SHA384 in GovCloud) is the default for new instances,
#: supports automatic server certificate rotation, and its root is in every region's bundle.
CA_CERT_IDENTIFIER = "rds-ca-rsa2048-g1"


def cloudstack_db_parameters(management_servers: int) -> dict[str, tuple[str, str]]:
    """name -> (value, apply method): the guide's MySQL settings, as RDS takes them."""
    return {
        "innodb_rollback_on_timeout": ("1", "pending-reboot"),  # static in MySQL
        "innodb_lock_wait_timeout": ("600", "immediate"),
        "max_connections": (str(CONNECTIONS_PER_MANAGEMENT_SERVER * management_servers), "immediate"),
        # Binary logging (on with automated backups) in ROW format, as the guide asks.
        "binlog_format": ("ROW", "immediate"),
        # The RDS master user has no SUPER: without this, creating routines while
        # binary logging is on is refused.
        "log_bin_trust_function_creators": ("1", "immediate"),
        "sql_mode": (CLOUDSTACK_SQL_MODE, "immediate"),
        # Every connection in TLS: the server refuses the others with error 3159 (RDS User
        # Guide, "Requiring SSL/TLS for all connections to a MySQL DB instance"; dynamic in
        # MySQL 8.0 and 8.4, so no reboot). The clients verify the server themselves
        # (ssl-mode / sslMode VERIFY_IDENTITY against the RDS CA bundle, docs/boot.md): the
        # server cannot tell a client that verifies from one that does not.
        "require_secure_transport": ("1", "immediate"),
    }


def final_snapshot_identifier(stack: str, suffix: str) -> str:
    """A valid RDS snapshot identifier (letters, digits, single hyphens) for any stack name:
    stack names may hold '.', '_' and '--', which RDS would refuse only at deletion time."""
    words = re.findall(r"[a-z0-9]+", stack.lower())
    return "-".join(["cloudstack", *words, "final", suffix])


#: RDS DB instance identifiers: 1-63 letters, digits, single hyphens, first a letter.
DB_IDENTIFIER_MAX = 63


def db_identifier(stack: str, deployment_id: str) -> str:
    """`cloudstack-<stack words>-<deployment id>`: known before the database exists, so its
    error log group can be created (with a retention) before RDS creates one that never
    expires. Valid for any stack name (see aws_constraints.RDS_DB_IDENTIFIER)."""
    words = "-".join(["cloudstack", *re.findall(r"[a-z0-9]+", stack.lower())])
    head = words[:DB_IDENTIFIER_MAX - len(deployment_id) - 1].rstrip("-")
    return f"{head}-{deployment_id}"


def error_log_group_name(identifier: str) -> str:
    """Where RDS publishes a MySQL instance's error log (RDS User Guide, publishing database
    logs to CloudWatch Logs: /aws/rds/instance/<identifier>/<log type>)."""
    return f"/aws/rds/instance/{identifier}/error"


def parameter_group_family(engine_version: str) -> str:
    return f"mysql{engine_version}"


def managed_secret_arn(secrets: Sequence, preview: bool):
    """The ARN (str) of the master user's secret RDS manages, from the instance's
    master_user_secrets (DBInstance.MasterUserSecret). RDS names the secret when it applies
    ManageMasterUserPassword: a preview of the update that turns it on has none yet, so the
    ARN is unknown there (pulumi.output.UNKNOWN). ValueError when an update ends without it:
    nothing could read the master password then."""
    if secrets and secrets[0].secret_arn:
        return secrets[0].secret_arn
    if preview:
        return UNKNOWN
    raise ValueError("RDS reported no master user secret (MasterUserSecret) for the CloudStack database although"
                     " manage_master_user_password is set; run `pulumi up` again once the database is available")


@dataclass(frozen=True)
class RdsCloudDbArgs:
    stack: str
    engine_version: str
    instance_class: str
    allocated_storage_gb: int
    multi_az: bool
    backup_retention_days: int
    deletion_protection: bool
    skip_final_snapshot: bool
    subnet_ids: pulumi.Input[Sequence[str]]
    security_group_id: pulumi.Input[str]
    management_servers: int = 1
    tags: dict = field(default_factory=dict)
    #: Single-AZ: the management server's AZ (no cross-AZ latency or data charges).
    #: None: RDS chooses (Multi-AZ, where AWS refuses a fixed AZ).
    availability_zone: Optional[str] = None
    #: The run that upgrades 8.0 to 8.4: RDS needs AllowMajorVersionUpgrade, and the upgrade
    #: is applied at once (not in the maintenance window), so the old parameter group,
    #: deleted only after the database moved to the new one, is kept until it is done.
    major_version_upgrade: bool = False
    #: Root of the deployment's SSM parameters (naming.parameter_root); None: `/cloudstack-ec2/<stack>`.
    parameter_root: Optional[pulumi.Input[str]] = None
    #: The DB instance identifier (db_identifier). None: pulumi-aws names it (a database
    #: created before identifiers were chosen here keeps its name), and then RDS creates the
    #: error log group itself, without retention.
    identifier: Optional[pulumi.Input[str]] = None
    #: Retention of the managed error log group (CloudWatch Logs retentionInDays).
    log_retention_days: int = 30
    #: Create/update/delete timeout: Multi-AZ creation, storage changes and major
    #: upgrades outlast the provider's defaults (40/80/60 minutes).
    timeout_minutes: int = 180


class RdsCloudDb(pulumi.ComponentResource):
    """RDS MySQL (never Aurora: CloudStack needs MyISAM), a parameter group of the matching
    family with CloudStack's settings, a subnet group, the master password generated and kept
    by RDS in a Secrets Manager secret of its own (never in the stack's state), and the
    endpoint published to SSM for the management server.

    Outputs: address, port, endpoint_parameter, master_secret_arn.
    """

    def __init__(self, name: str, args: RdsCloudDbArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:RdsCloudDb", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        # Unique per database, so a re-created stack can be destroyed again.
        final_snapshot = random.RandomId(f"{name}-final-snapshot-suffix", byte_length=4, opts=child)
        subnet_group = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=args.subnet_ids, tags=tags, opts=child)
        parameter_group = aws.rds.ParameterGroup(
            f"{name}-params", family=parameter_group_family(args.engine_version),
            description="CloudStack settings (install guide 4.5.4, adapted to RDS)",
            parameters=[aws.rds.ParameterGroupParameterArgs(name=k, value=v, apply_method=m)
                        for k, (v, m) in sorted(cloudstack_db_parameters(args.management_servers).items())],
            tags=tags, opts=child)
        log_dependencies = []
        if args.identifier is not None:
            # Created first: RDS then publishes into it instead of creating a group that
            # never expires and outlives `pulumi destroy`.
            log_dependencies.append(aws.cloudwatch.LogGroup(
                f"{name}-error-log", name=pulumi.Output.from_input(args.identifier).apply(error_log_group_name),
                retention_in_days=args.log_retention_days, tags=tags, opts=child))
        instance = aws.rds.Instance(
            f"{name}-mysql", identifier=args.identifier,
            engine="mysql", engine_version=args.engine_version, instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gb, storage_type="gp3", storage_encrypted=True,
            multi_az=args.multi_az, db_subnet_group_name=subnet_group.name,
            availability_zone=None if args.multi_az else args.availability_zone,
            parameter_group_name=parameter_group.name, vpc_security_group_ids=[args.security_group_id],
            ca_cert_identifier=CA_CERT_IDENTIFIER,
            publicly_accessible=False, username=MASTER_USERNAME,
            # RDS generates the master password and keeps it in a secret of its own
            # (RDS User Guide, "Password management with Amazon RDS and AWS Secrets
            # Manager"): the password is never an input, so it is never in the stack's
            # state. On a database created with a password, turning this on makes RDS
            # set a new one at once; the management server reads it from that secret.
            # The stack has no KMS key of its own: Secrets Manager's AWS managed key
            # (aws/secretsmanager) encrypts the secret (no master_user_secret_kms_key_id).
            manage_master_user_password=True,
            backup_retention_period=args.backup_retention_days, copy_tags_to_snapshot=True,
            deletion_protection=args.deletion_protection, skip_final_snapshot=args.skip_final_snapshot,
            final_snapshot_identifier=None if args.skip_final_snapshot else final_snapshot.hex.apply(
                lambda suffix: final_snapshot_identifier(args.stack, suffix)),
            auto_minor_version_upgrade=True, allow_major_version_upgrade=args.major_version_upgrade,
            apply_immediately=True if args.major_version_upgrade else None,
            enabled_cloudwatch_logs_exports=["error"],
            tags=tags,
            # The database is the cloud's state: never replace it silently.
            # availability_zone forces a new database when it changes (or is first set on
            # a database created before it was): keep the one the database was created in.
            opts=pulumi.ResourceOptions(parent=self, protect=args.deletion_protection,
                                        ignore_changes=["availability_zone"], depends_on=log_dependencies,
                                        custom_timeouts=pulumi.CustomTimeouts(
                                            create=f"{args.timeout_minutes}m", update=f"{args.timeout_minutes}m",
                                            delete=f"{args.timeout_minutes}m")))
        endpoint = aws.ssm.Parameter(
            f"{name}-endpoint", name=pulumi.Output.from_input(
                args.parameter_root if args.parameter_root is not None else naming.stack_prefix(args.stack)).apply(
                lambda root: naming.parameter_under(root, naming.PARAM_DB_ENDPOINT)), type="String",
            value=pulumi.Output.concat(instance.address, ":", instance.port.apply(str)),
            description="CloudStack database endpoint (host:port)", tags=tags, opts=child)

        self.address = instance.address
        self.port = instance.port
        #: The DB instance identifier (the upgrade's snapshot and CloudWatch's DBInstanceIdentifier dimension).
        self.identifier = instance.identifier
        # The secret RDS created (DBInstance.MasterUserSecret.SecretArn).
        self.master_secret_arn = instance.master_user_secrets.apply(
            lambda secrets: managed_secret_arn(secrets, pulumi.runtime.is_dry_run()))
        self.endpoint_parameter = endpoint.name
        self.register_outputs({
            "address": self.address,
            "port": self.port,
            "master_secret_arn": self.master_secret_arn,
            "endpoint_parameter": self.endpoint_parameter,
        })
