"""ManagementServer: the CloudStack management server, its secrets and its instance role."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.model import naming
from components.resources.anchor import anchor_key
from components.resources.node import Grant, InstanceSpec, NodeArgs, hardened_instance, instance_role, parameter_arn


@dataclass(frozen=True)
class ManagementServerArgs:
    stack: str
    instance: InstanceSpec
    #: ARN of the RDS master secret (owned by RdsCloudDb): read by the DB setup.
    db_master_secret_arn: pulumi.Input[str]
    #: Renders the boot script from the secrets' names (never their values) and the
    #: anchor key's ARN ("anchor_key_arn").
    render_user_data: Callable[[dict], str]
    #: ARN of the management script object in the boot-script bucket (BootScriptBucket.object_arn).
    boot_script_arn: pulumi.Input[str]
    #: The boot-script bucket's name: render_user_data gets it as "boot_bucket".
    boot_bucket: pulumi.Input[str]
    tags: dict = field(default_factory=dict)
    #: Root of the deployment's SSM parameters (naming.parameter_root); None: `/cloudstack-ec2/<stack>`.
    #: render_user_data gets it as "parameter_root".
    parameter_root: Optional[pulumi.Input[str]] = None
    #: The router's console Elastic IP (components/model/consoles.py), which console URLs name;
    #: render_user_data gets it as "console_address". "": none.
    console_address: pulumi.Input[str] = ""


def _secret(name: str, stack: str, which: str, description: str, child, tags) -> aws.secretsmanager.Secret:
    return aws.secretsmanager.Secret(
        f"{name}-{which}", name_prefix=naming.secret_name_prefix(stack, which), description=description,
        recovery_window_in_days=7, tags=tags, opts=child)


def _password(name: str, child, length: int = 32) -> random.RandomPassword:
    # Letters and digits only: these go through shell, SQL and properties files.
    return random.RandomPassword(name, length=length, special=False, min_lower=1, min_upper=1, min_numeric=1,
                                 opts=child)


class ManagementServer(pulumi.ComponentResource):
    """A Nitro instance that installs and runs the CloudStack management server.

    It owns CloudStack's secrets (its DB user's password, the management and database
    encryption keys, the admin password, and the admin API keys it writes itself) and the
    anchor key (components/resources/anchor.py) under which it publishes its SSH public key
    and package version for the KVM hosts.

    Outputs: instance_id, private_ip, secret ARNs, api_keys_secret_arn, anchor_key_arn.
    """

    def __init__(self, name: str, args: ManagementServerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:ManagementServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        db_cloud = _secret(name, args.stack, naming.SECRET_DB_CLOUD, "CloudStack database user", child, tags)
        keys = _secret(name, args.stack, naming.SECRET_CLOUDSTACK_KEYS,
                       "CloudStack management (-m) and database (-k) encryption keys", child, tags)
        admin = _secret(name, args.stack, naming.SECRET_ADMIN, "CloudStack admin login", child, tags)
        api_keys = _secret(name, args.stack, naming.SECRET_API_KEYS,
                           "CloudStack admin API keys (written by the management server)", child, tags)
        aws.secretsmanager.SecretVersion(
            f"{name}-db-cloud-value", secret_id=db_cloud.id,
            secret_string=pulumi.Output.json_dumps({"username": "cloud",
                                                    "password": _password(f"{name}-db-cloud-password", child).result}),
            opts=child)
        aws.secretsmanager.SecretVersion(
            f"{name}-keys-value", secret_id=keys.id,
            secret_string=pulumi.Output.json_dumps({
                "management_key": _password(f"{name}-management-key", child).result,
                "database_key": _password(f"{name}-database-key", child).result}),
            opts=child)
        aws.secretsmanager.SecretVersion(
            f"{name}-admin-value", secret_id=admin.id,
            secret_string=pulumi.Output.json_dumps({"username": "admin",
                                                    "password": _password(f"{name}-admin-password", child, 24).result}),
            opts=child)

        root = args.parameter_root if args.parameter_root is not None else naming.stack_prefix(args.stack)

        # The SSH public key and the package version the hosts trust: the management server
        # creates them itself, as SecureString parameters under the anchor key (Pulumi cannot
        # create them: only this server's role may encrypt with that key, see anchor.py).
        ssh_key, version = (parameter_arn(root, naming.PARAM_MANAGEMENT_SSH_KEY),
                            parameter_arn(root, naming.PARAM_CLOUDSTACK_VERSION))

        role = instance_role(name, grants=[
            Grant(["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                  [args.db_master_secret_arn, db_cloud.arn, keys.arn, admin.arn, api_keys.arn]),
            Grant(["secretsmanager:PutSecretValue"], [api_keys.arn]),
            Grant(["ssm:GetParameter"], [parameter_arn(root, naming.PARAM_DB_ENDPOINT),
                                         parameter_arn(root, naming.PARAM_EFS_DNS)]),
            # GetParameterHistory: how a reader learns the key a SecureString is under.
            Grant(["ssm:GetParameterHistory", "ssm:PutParameter"], [ssh_key, version]),
            Grant(["s3:GetObject"], [args.boot_script_arn]),
        ], opts=child, tags=tags)
        key = anchor_key(name, role.role, tags, child)
        profile = role.profile

        user_data = pulumi.Output.all(
            db_master=args.db_master_secret_arn, db_cloud=db_cloud.arn, keys=keys.arn,
            admin=admin.arn, api_keys=api_keys.arn, parameter_root=root, boot_bucket=args.boot_bucket,
            console_address=args.console_address, anchor_key_arn=key.arn,
        ).apply(args.render_user_data)
        instance = hardened_instance(name, NodeArgs(
            spec=args.instance, user_data_base64=user_data, instance_profile=profile.name,
            tags={**tags, "Role": "cloudstack-management"}), child)

        self.instance = instance
        self.instance_id = instance.id
        self.private_ip = instance.private_ip
        #: ARN of the anchor key: KVM hosts accept the SSH key and version only under it.
        self.anchor_key_arn = key.arn
        self.api_keys_secret_arn = api_keys.arn
        self.api_keys_secret_id = api_keys.id
        self.admin_secret_arn = admin.arn
        self.secret_arns = {
            naming.SECRET_DB_CLOUD: db_cloud.arn, naming.SECRET_CLOUDSTACK_KEYS: keys.arn,
            naming.SECRET_ADMIN: admin.arn, naming.SECRET_API_KEYS: api_keys.arn,
        }
        self.register_outputs({
            "instance_id": self.instance_id,
            "private_ip": self.private_ip,
            "api_keys_secret_arn": self.api_keys_secret_arn,
            "secret_arns": self.secret_arns,
            "anchor_key_arn": self.anchor_key_arn,
        })
