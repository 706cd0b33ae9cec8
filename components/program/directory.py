"""The company directory's secrets (the stack's `ldap`): the bind password, which the
registration applies, and the LDAPS CA certificate, which every management server trusts.
Both are Pulumi secrets in the state and Secrets Manager secrets of the stack; neither value
is an input of anything else."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_aws as aws

from components.model import naming
from components.program.context import Context


def _secret(ctx: Context, which: str, description: str, value: str) -> aws.secretsmanager.SecretVersion:
    secret = aws.secretsmanager.Secret(
        which, name_prefix=naming.secret_name_prefix(ctx.stack, which), description=description,
        recovery_window_in_days=7, tags=ctx.tags)
    return aws.secretsmanager.SecretVersion(which, secret_id=secret.arn, secret_string=pulumi.Output.secret(value))


def bind_password(ctx: Context) -> Optional[aws.secretsmanager.SecretVersion]:
    """`<prefix>/ldap-bind`: the registration gets its ARN and version id and reads the value
    when it sets ldap.bind.password; a new password is a new version, which it applies. None
    without `ldap`."""
    directory = ctx.settings.ldap
    if naming.SECRET_LDAP_BIND not in naming.stack_secrets(directory):
        return None
    return _secret(ctx, naming.SECRET_LDAP_BIND, "Bind password of the company directory (CloudStack's "
                   "ldap.bind.password)", directory.bind_password)


def ca_certificate(ctx: Context) -> Optional[aws.secretsmanager.SecretVersion]:
    """`<prefix>/ldap-ca`: the PEM CA certificate(s) the management servers put in their LDAPS
    truststore at boot. None without `ldap` or without ldaps. Called once per stack: every
    management server gets this one secret."""
    directory = ctx.settings.ldap
    if naming.SECRET_LDAP_CA not in naming.stack_secrets(directory):
        return None
    return _secret(ctx, naming.SECRET_LDAP_CA, "CA certificate(s) of the company directory's LDAPS servers",
                   directory.ca_certificate)
