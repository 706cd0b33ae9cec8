"""ManagementServer: the CloudStack management server, its secrets and its instance role."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Optional

import pulumi
import pulumi_aws as aws

from components.model import naming
from components.resources.anchor import anchor_key
from components.resources.node import (Grant, InstanceSpec, NodeArgs, hardened_instance, instance_role, parameter_arn,
                                        parameter_name)


@dataclass(frozen=True)
class ManagementServerArgs:
    stack: str
    instance: InstanceSpec
    #: ARN of the RDS-managed master secret (RdsCloudDb.master_secret_arn): published in
    #: an SSM parameter the DB setup waits for, so the instance never waits for RDS.
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


class ManagementServer(pulumi.ComponentResource):
    """A Nitro instance that installs and runs the CloudStack management server.

    It owns CloudStack's secrets (its DB user's password, the management and database
    encryption keys, the admin password, and the admin API keys it writes itself) and the
    anchor key (components/resources/anchor.py) under which it publishes its SSH public key
    and package version for the KVM hosts. The secrets are created WITHOUT a value: the
    first management server generates each value and stores it only while the secret has
    none (userdata/management-server.sh), so no value is ever in the stack's state, outputs
    or user data. A stack whose secrets got their values from Pulumi (SecretVersion
    resources) keeps them: deleting an aws.secretsmanager.SecretVersion that carries
    AWSCURRENT leaves that label, and so the value, in place (pulumi-aws,
    aws.secretsmanager.SecretVersion: "that label cannot be removed and will be skipped").

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
        root = args.parameter_root if args.parameter_root is not None else naming.stack_prefix(args.stack)

        # The SSH public key and the package version the hosts trust: the management server
        # creates them itself, as SecureString parameters under the anchor key (Pulumi cannot
        # create them: only this server's role may encrypt with that key, see anchor.py).
        ssh_key, version = (parameter_arn(root, naming.PARAM_MANAGEMENT_SSH_KEY),
                            parameter_arn(root, naming.PARAM_CLOUDSTACK_VERSION))

        own = [db_cloud.arn, keys.arn, admin.arn, api_keys.arn]
        role = instance_role(name, grants=[
            Grant(["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], own),
            # The first value of each (generated at boot); never another secret's.
            Grant(["secretsmanager:PutSecretValue"], own),
            Grant(["ssm:GetParameter"], [parameter_arn(root, naming.PARAM_DB_ENDPOINT),
                                         parameter_arn(root, naming.PARAM_EFS_DNS),
                                         parameter_arn(root, naming.PARAM_DB_MASTER_SECRET)]),
            # GetParameterHistory: how a reader learns the key a SecureString is under.
            Grant(["ssm:GetParameterHistory", "ssm:PutParameter"], [ssh_key, version]),
            Grant(["s3:GetObject"], [args.boot_script_arn]),
            *args.instance.role_grants,
        ], opts=child, tags=tags)
        key = anchor_key(name, role.role, tags, child)
        profile = role.profile

        self._publish_master_secret(name, root, profile, args.db_master_secret_arn, tags)

        user_data = pulumi.Output.all(
            db_cloud=db_cloud.arn, keys=keys.arn,
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

    def _publish_master_secret(self, name: str, root: pulumi.Input[str], profile: aws.iam.InstanceProfile,
                               secret_arn: pulumi.Input[str], tags: dict) -> aws.ssm.Parameter:
        """The grant to read the RDS-managed master secret and the SSM parameter naming it.

        Both exist only once RDS does (it names the secret), and neither delays the
        instance: the boot waits for the parameter, which is written after the grant
        (IAM's eventual consistency is covered by the boot's bounded retry of the read).
        """
        child = pulumi.ResourceOptions(parent=self)
        grant = aws.iam.RolePolicy(
            f"{name}-db-master-read", role=profile.role,
            policy=pulumi.Output.from_input(secret_arn).apply(lambda arn: json.dumps({
                "Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                    "Resource": [arn]}]})),
            opts=child)
        return aws.ssm.Parameter(
            f"{name}-db-master-secret", name=parameter_name(root, naming.PARAM_DB_MASTER_SECRET), type="String",
            value=secret_arn, description="ARN of the RDS-managed secret of the database's master user",
            tags=tags, opts=pulumi.ResourceOptions(parent=self, depends_on=[grant]))
