"""Names shared by the program, the boot scripts and the registration.

Pure module. SSM parameter names are deterministic per stack (the boot scripts poll
them); Secrets Manager secrets get a unique suffix from AWS (`name_prefix`), because a
deleted secret's name stays reserved for its recovery window and a destroyed stack
must be re-creatable at once; their names reach the scripts as (non-secret) inputs.
"""

from __future__ import annotations

PROJECT = "cloudstack-ec2"

#: Secrets: what each holds (JSON) and who reads it.
SECRET_DB_MASTER = "db-master"            # {"username","password"}: RDS master user (mgmt)
SECRET_DB_CLOUD = "db-cloud"              # {"username","password"}: CloudStack's `cloud` user (mgmt)
SECRET_CLOUDSTACK_KEYS = "cloudstack-keys"  # {"management_key","database_key"} (mgmt)
SECRET_ADMIN = "admin"                    # {"username","password"}: CloudStack admin (mgmt)
SECRET_API_KEYS = "api-keys"              # {"apikey","secretkey"}: written by mgmt, read by registration

#: SSM parameters (String), written by Pulumi (endpoints) or by the mgmt server (its SSH key).
PARAM_DB_ENDPOINT = "db-endpoint"
PARAM_EFS_DNS = "efs-dns"
PARAM_MANAGEMENT_SSH_KEY = "management-ssh-public-key"
#: Value of a parameter the management server has not written yet.
PENDING = "pending"


def stack_prefix(stack: str) -> str:
    """`/cloudstack-ec2/<stack>`: the root of every per-stack name."""
    if not stack or "/" in stack:
        raise ValueError(f"stack name {stack!r} must be non-empty and contain no '/'")
    return f"/{PROJECT}/{stack}"


def parameter_name(stack: str, which: str) -> str:
    return f"{stack_prefix(stack)}/{which}"


def secret_name_prefix(stack: str, which: str) -> str:
    """Secrets Manager names may not start with '/': drop it, keep the hierarchy."""
    return f"{stack_prefix(stack)[1:]}/{which}-"
