"""ManagementServer: the CloudStack management server, its secrets and its instance role."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Optional

import pulumi
import pulumi_aws as aws

from components.model import naming
from components.resources.anchor import anchor_key, reader_grant
from components.resources.node import (Grant, InstanceSpec, NodeArgs, hardened_instance, instance_role, parameter_arn,
                                        parameter_name, policy_document)


@dataclass(frozen=True)
class ManagementServerArgs:
    stack: str
    instance: InstanceSpec
    #: ARN of the RDS-managed master secret (RdsCloudDb.master_secret_arn): published in
    #: an SSM parameter the DB setup waits for, so the instance never waits for RDS.
    db_master_secret_arn: pulumi.Input[str]
    #: Renders the boot script from the secrets' names (never their values), the
    #: anchor key's ARN ("anchor_key_arn") and the instance role's name ("role_name").
    render_user_data: Callable[[dict], str]
    #: ARN of the management script object in the boot-script bucket (BootScriptBucket.object_arn).
    boot_script_arn: pulumi.Input[str]
    #: The boot-script bucket's name: render_user_data gets it as "boot_bucket".
    boot_bucket: pulumi.Input[str]
    #: BootScriptBucket.packages_arn: the first server uploads the hosts' packages there
    #: (s3:PutObject, nothing else). None: no copy is kept; hosts install from upstream.
    packages_arn: Optional[pulumi.Input[str]] = None
    tags: dict = field(default_factory=dict)
    #: Root of the deployment's SSM parameters (naming.parameter_root); None: `/cloudstack-ec2/<stack>`.
    #: render_user_data gets it as "parameter_root".
    parameter_root: Optional[pulumi.Input[str]] = None
    #: The router's console Elastic IP (components/model/consoles.py), which console URLs name;
    #: render_user_data gets it as "console_address". "": none.
    console_address: pulumi.Input[str] = ""
    #: With LDAPS: the secret holding the directory's CA certificate(s) (PEM), which the boot
    #: puts in a Java truststore for CloudStack's LDAP client. The server then also owns the
    #: truststore's password secret (no value from Pulumi: the first server generates it).
    #: render_user_data gets both as "ldap_ca" and "ldap_truststore". None: no LDAPS.
    ldap_ca_secret_arn: Optional[pulumi.Input[str]] = None
    #: The cloud is not bootstrapped yet (no `bootstrap/done` marker, see `bootstrapped`):
    #: the role gets the bootstrap grants (naming.BOOTSTRAP_POLICIES). False: they are not
    #: declared, so Pulumi never adds back what the first management server removed.
    bootstrapping: bool = True
    #: The first management server, whose secrets and anchor key this one shares (an
    #: additional server: it reads them, never writes them); None: this one is the first
    #: and owns them.
    first: Optional["ManagementServer"] = None
    #: Replace the instance in this update when its user data differs from the recorded one
    #: (the renewInstances setting; NodeArgs.renew_user_data).
    renew_user_data: bool = False


def bootstrapped(parameter_root: str) -> bool:
    """Whether the first management server marked the cloud bootstrapped: the SSM parameter
    `<parameter_root>/bootstrap/done` exists (userdata/management-server.sh writes it once the
    schema exists, the admin password is set and the API keys are stored, then deletes the
    bootstrap policies itself). `parameter_root` is the previous run's ("" on the first run:
    False, nothing asked). Any value counts: the management role may write the marker but not
    delete it (no ssm:DeleteParameter), so a compromised server cannot get the grants back.
    Asked with GetParametersByPath on the marker's own path (an absent parameter is an empty
    answer there, where GetParameter fails the whole run), without decryption."""
    if not parameter_root:
        return False
    marker = naming.parameter_under(parameter_root, naming.PARAM_BOOTSTRAPPED)
    found = aws.ssm.get_parameters_by_path(path=f"{parameter_root}/{naming.BOOTSTRAP_PATH}",
                                           with_decryption=False)
    return marker in (found.names or [])


def _secret(name: str, stack: str, which: str, description: str, child, tags) -> aws.secretsmanager.Secret:
    return aws.secretsmanager.Secret(
        f"{name}-{which}", name_prefix=naming.secret_name_prefix(stack, which), description=description,
        recovery_window_in_days=7, tags=tags, opts=child)


class ManagementServer(pulumi.ComponentResource):
    """A Nitro instance that installs and runs the CloudStack management server.

    It owns CloudStack's secrets (its DB user's password, the management and database
    encryption keys, the admin password, and the registration account's API keys it writes itself) and the
    anchor key (components/resources/anchor.py) under which it publishes its SSH public key
    and package version for the KVM hosts. The secrets are created WITHOUT a value: the
    first management server generates each value and stores it only while the secret has
    none (userdata/management-server.sh), so no value is ever in the stack's state, outputs
    or user data. A stack whose secrets got their values from Pulumi (SecretVersion
    resources) keeps them: deleting an aws.secretsmanager.SecretVersion that carries
    AWSCURRENT leaves that label, and so the value, in place (pulumi-aws,
    aws.secretsmanager.SecretVersion: "that label cannot be removed and will be skipped").

    An additional server (ManagementServerArgs.first) owns none of these: its role reads
    the first server's database user and keys (and, with LDAPS, the shared truststore's
    secrets) and the package version the first one published (a KMS grant: Decrypt only
    with its anchor key), nothing else; it joins a cloud the first one bootstrapped and publishes
    nothing for the hosts (the SSH key pair lives in the shared database, apache/cloudstack
    #6570, so every server uses the one the first published).

    Outputs: instance_id, private_ip, secret ARNs, api_keys_secret_arn, anchor_key_arn.
    """

    def __init__(self, name: str, args: ManagementServerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:ManagementServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        root = args.parameter_root if args.parameter_root is not None else naming.stack_prefix(args.stack)
        reader = None
        if args.first is None:
            secrets, key_arn, role, truststore_arn, bootstrap = self._first_server(name, args, root, tags)
        else:
            # An additional server reads the first one's secrets (the same database user and
            # keys: the installation guide's additional management servers), joins a cloud
            # already bootstrapped (never the master or admin secret) and publishes nothing:
            # the hosts trust only what the first one writes under its anchor key.
            secrets, key_arn = dict(args.first.secret_arns), args.first.anchor_key_arn
            truststore_arn, bootstrap = args.first.ldap_truststore_secret_arn, None
            ldap_secrets = [truststore_arn, args.ldap_ca_secret_arn] if truststore_arn is not None else []
            role = instance_role(name, grants=[
                Grant(["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                      [secrets[naming.SECRET_DB_CLOUD], secrets[naming.SECRET_CLOUDSTACK_KEYS], *ldap_secrets]),
                self._read_parameters(root), Grant(["s3:GetObject"], [args.boot_script_arn]),
                # The first server's package version, which it installs too (install_packages in
                # management-server.sh): read as the hosts read it, with the key it is under.
                Grant(["ssm:GetParameterHistory"], [parameter_arn(root, naming.PARAM_CLOUDSTACK_VERSION)]),
                *self._console_forwards(root, secrets[naming.SECRET_API_KEYS]),
                *args.instance.role_grants,
            ], opts=child, tags=tags)
            # Decrypt only, through a grant (the key is the first server's; anchor.py); the
            # instance launches after it, as the hosts do.
            reader = reader_grant(name, key_arn, role.role, child)

        user_data = pulumi.Output.all(
            db_cloud=secrets[naming.SECRET_DB_CLOUD], keys=secrets[naming.SECRET_CLOUDSTACK_KEYS],
            admin=secrets[naming.SECRET_ADMIN], api_keys=secrets[naming.SECRET_API_KEYS], parameter_root=root,
            boot_bucket=args.boot_bucket, console_address=args.console_address, anchor_key_arn=key_arn,
            role_name=role.role.name, ldap_ca=args.ldap_ca_secret_arn or "", ldap_truststore=truststore_arn or "",
        ).apply(args.render_user_data)
        instance = hardened_instance(name, NodeArgs(
            spec=args.instance, user_data_base64=user_data, instance_profile=role.profile.name,
            tags={**tags, "Role": "cloudstack-management"}, renew_user_data=args.renew_user_data),
            pulumi.ResourceOptions(parent=self, depends_on=[r for r in (bootstrap, reader) if r is not None]))

        self.instance = instance
        #: This run declares the bootstrap grants (ManagementServerArgs.bootstrapping; the first server only).
        self.bootstrapping = args.bootstrapping and args.first is None
        self.instance_id = instance.id
        self.private_ip = instance.private_ip
        #: ARN of the anchor key: KVM hosts accept the SSH key and version only under it.
        self.anchor_key_arn = key_arn
        self.api_keys_secret_arn = secrets[naming.SECRET_API_KEYS]
        self.api_keys_secret_id = args.first.api_keys_secret_id if args.first is not None else self.api_keys_secret_id
        #: With LDAPS: the truststore password's secret, one for every server (the registration
        #: sets ldap.truststore.password from it)
        self.ldap_truststore_secret_arn = truststore_arn
        self.admin_secret_arn = secrets[naming.SECRET_ADMIN]
        self.secret_arns = secrets
        self.register_outputs({
            "instance_id": self.instance_id,
            "private_ip": self.private_ip,
            "api_keys_secret_arn": self.api_keys_secret_arn,
            "secret_arns": self.secret_arns,
            "anchor_key_arn": self.anchor_key_arn,
        })

    @staticmethod
    def _read_parameters(root: pulumi.Input[str]) -> Grant:
        """The parameters every server's boot reads: the database and EFS endpoints, the bootstrap
        marker, and whether the router forwards the UI/API (its firewall drops that path otherwise)."""
        return Grant(["ssm:GetParameter"], [parameter_arn(root, naming.PARAM_DB_ENDPOINT),
                                            parameter_arn(root, naming.PARAM_EFS_DNS),
                                            parameter_arn(root, naming.PARAM_BOOTSTRAPPED),
                                            parameter_arn(root, naming.PARAM_UI_FORWARD)])

    @staticmethod
    def _console_forwards(root: pulumi.Input[str], api_keys_arn: pulumi.Input[str]) -> list[Grant]:
        """What every server's console forwards publisher (userdata/console-forwards.sh, a timer,
        outside the bootstrap) needs: the API keys, read at each run, and the one parameter the
        router polls, read and written (never created: Pulumi does, components/resources/router.py)."""
        return [Grant(["secretsmanager:GetSecretValue"], [api_keys_arn]),
                Grant(["ssm:GetParameter", "ssm:PutParameter"], [parameter_arn(root, naming.PARAM_CONSOLE_FORWARDS)])]

    def _first_server(self, name: str, args: ManagementServerArgs, root: pulumi.Input[str], tags: dict):
        """The first server's secrets (created without a value), its role, the anchor key and,
        while bootstrapping, the bootstrap grants: ({secret kind: ARN}, the anchor key's ARN,
        the InstanceRole, the LDAPS truststore secret's ARN or None, the bootstrap policy or None)."""
        child = pulumi.ResourceOptions(parent=self)
        db_cloud = _secret(name, args.stack, naming.SECRET_DB_CLOUD, "CloudStack database user", child, tags)
        keys = _secret(name, args.stack, naming.SECRET_CLOUDSTACK_KEYS,
                       "CloudStack management (-m) and database (-k) encryption keys", child, tags)
        admin = _secret(name, args.stack, naming.SECRET_ADMIN, "CloudStack admin login", child, tags)
        api_keys = _secret(name, args.stack, naming.SECRET_API_KEYS,
                           "CloudStack admin API keys (written by the management server)", child, tags)
        self.api_keys_secret_id = api_keys.id

        # The SSH public key and the package version the hosts trust: the management server
        # creates them itself, as SecureString parameters under the anchor key (Pulumi cannot
        # create them: only this server's role may encrypt with that key, see anchor.py).
        ssh_key, version = (parameter_arn(root, naming.PARAM_MANAGEMENT_SSH_KEY),
                            parameter_arn(root, naming.PARAM_CLOUDSTACK_VERSION))

        truststore = None
        ldap_secrets: list = []      # LDAPS: its truststore password (own) and CA (read only)
        if args.ldap_ca_secret_arn is not None:
            truststore = _secret(name, args.stack, naming.SECRET_LDAP_TRUSTSTORE,
                                 "Password of the LDAPS truststore (generated by the management server)", child, tags)
            ldap_secrets = [truststore.arn, args.ldap_ca_secret_arn]
        # Steady state: what every boot needs (the `cloud` user's password and the keys of
        # db.properties, the endpoints, the trust anchors it publishes, its script, the console
        # forwards publisher's API keys and parameter; with LDAPS
        # the truststore's CA and password, which any server, also a replaced one, builds from
        # and the first one to need it generates).
        role = instance_role(name, grants=[
            Grant(["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                  [db_cloud.arn, keys.arn, *ldap_secrets]),
            *([Grant(["secretsmanager:PutSecretValue"], [truststore.arn])] if truststore else []),
            self._read_parameters(root),
            # GetParameterHistory: how a reader learns the key a SecureString is under.
            Grant(["ssm:GetParameterHistory", "ssm:PutParameter"], [ssh_key, version]),
            Grant(["s3:GetObject"], [args.boot_script_arn]),
            *self._console_forwards(root, api_keys.arn),
            # The hosts' packages of the version it publishes (publish_packages).
            *([Grant(["s3:PutObject"], [args.packages_arn])] if args.packages_arn is not None else []),
            *args.instance.role_grants,
        ], opts=child, tags=tags)
        key = anchor_key(name, role.role, tags, child)

        own = [db_cloud.arn, keys.arn, admin.arn, api_keys.arn]
        bootstrap = self._bootstrap_grants(name, root, role.role, own, [admin.arn, api_keys.arn]) \
            if args.bootstrapping else None
        self._publish_master_secret(name, root, role.profile, args.db_master_secret_arn, tags, args.bootstrapping)
        secrets = {naming.SECRET_DB_CLOUD: db_cloud.arn, naming.SECRET_CLOUDSTACK_KEYS: keys.arn,
                   naming.SECRET_ADMIN: admin.arn, naming.SECRET_API_KEYS: api_keys.arn}
        return secrets, key.arn, role, truststore.arn if truststore else None, bootstrap

    def _bootstrap_grants(self, name: str, root: pulumi.Input[str], role: aws.iam.Role,
                          own: list, logins: list) -> aws.iam.RolePolicy:
        """The inline policy naming.BOOTSTRAP_POLICY: what only the first management server's
        bootstrap needs. The first value of each secret (PutSecretValue; never another
        secret's), the admin login and its API keys, where the master secret is published,
        the marker, and the deletion of the bootstrap policies. IAM's DeleteRolePolicy takes
        no condition on the policy's name (Service Authorization Reference, IAM: DeleteRolePolicy,
        resource `role`, no condition keys), so it is granted on this role alone: all the role
        can do with it is drop its own permissions."""
        statements = [
            Grant(["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], logins),
            Grant(["secretsmanager:PutSecretValue"], own),
            Grant(["ssm:GetParameter"], [parameter_arn(root, naming.PARAM_DB_MASTER_SECRET)]),
            Grant(["ssm:PutParameter"], [parameter_arn(root, naming.PARAM_BOOTSTRAPPED)]),
            Grant(["iam:DeleteRolePolicy"], [role.arn]),
        ]
        return aws.iam.RolePolicy(
            f"{name}-bootstrap", role=role.id, name=naming.BOOTSTRAP_POLICY,
            policy=policy_document(statements),
            opts=pulumi.ResourceOptions(parent=self))

    def _publish_master_secret(self, name: str, root: pulumi.Input[str], profile: aws.iam.InstanceProfile,
                               secret_arn: pulumi.Input[str], tags: dict, bootstrapping: bool) -> aws.ssm.Parameter:
        """The grant to read the RDS-managed master secret (naming.BOOTSTRAP_MASTER_POLICY,
        only while bootstrapping) and the SSM parameter naming it.

        Both exist only once RDS does (it names the secret), and neither delays the
        instance: the boot waits for the parameter, which is written after the grant
        (IAM's eventual consistency is covered by the boot's bounded retry of the read).
        """
        child = pulumi.ResourceOptions(parent=self)
        grants = [aws.iam.RolePolicy(
            f"{name}-db-master-read", role=profile.role, name=naming.BOOTSTRAP_MASTER_POLICY,
            policy=pulumi.Output.from_input(secret_arn).apply(lambda arn: json.dumps({
                "Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                    "Resource": [arn]}]})),
            opts=child)] if bootstrapping else []
        return aws.ssm.Parameter(
            f"{name}-db-master-secret", name=parameter_name(root, naming.PARAM_DB_MASTER_SECRET), type="String",
            value=secret_arn, description="ARN of the RDS-managed secret of the database's master user",
            tags=tags, opts=pulumi.ResourceOptions(parent=self, depends_on=grants))
