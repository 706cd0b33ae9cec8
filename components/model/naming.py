"""Names shared by the program, the boot scripts and the registration.

Pure module. SSM parameter names live under `/cloudstack-ec2/<stack>/<deployment id>`:
the id is random per deployment (pulumi-random, kept in the stack), because SSM names
are unique per account and region and two deployments of one stack name (two people
on local backends, a stack re-created after `stack rm`) would otherwise collide
(ParameterAlreadyExists). The boot scripts get that root as CSEC2_PREFIX. Stacks
deployed before the id existed keep their `/cloudstack-ec2/<stack>` root. Secrets
Manager secrets get a unique suffix from AWS (`name_prefix`), because a
deleted secret's name stays reserved for its recovery window and a destroyed stack
must be re-creatable at once; their names reach the scripts as (non-secret) inputs.
"""

from __future__ import annotations

import re

PROJECT = "cloudstack-ec2"

#: Secrets: what each holds (JSON) and who reads it. The stack creates them empty; the
#: management server writes each value. The RDS master user's is RDS's own (named by
#: RDS; its ARN in the parameter PARAM_DB_MASTER_SECRET).
SECRET_DB_CLOUD = "db-cloud"              # {"username","password"}: CloudStack's `cloud` user (mgmt)
SECRET_CLOUDSTACK_KEYS = "cloudstack-keys"  # {"management_key","database_key"} (mgmt)
SECRET_ADMIN = "admin"                    # {"username","password"}: CloudStack admin (mgmt)
SECRET_API_KEYS = "api-keys"              # {"apikey","secretkey"}: written by mgmt, read by registration

#: SSM parameters: Strings written by Pulumi (endpoints, forwards), and the management
#: server's SSH key and version, SecureStrings it writes under its anchor key
#: (components/resources/anchor.py).
PARAM_DB_ENDPOINT = "db-endpoint"
PARAM_EFS_DNS = "efs-dns"
#: ARN of the RDS-managed secret of the master user (RDS names it `rds!db-<id>`, so
#: it is known only once the database exists): the management server reads it here.
PARAM_DB_MASTER_SECRET = "db-master-secret"
PARAM_MANAGEMENT_SSH_KEY = "management-ssh-public-key"
#: The exact cloudstack-management package version the management server runs,
#: written by it; KVM hosts install the agent of that very version.
PARAM_CLOUDSTACK_VERSION = "cloudstack-version"
#: `<prefix>/host-ready/<overlay ip>`: written by a KVM host's boot script at its very end
#: (agent installed, management key authorized); the registration adds the host after it.
HOST_READY = "host-ready"
#: The router's forwards to VMs (vmForwards, DNAT entries separated by spaces, or
#: NO_FORWARDS), written by Pulumi; the router polls it and applies changes in place.
PARAM_ROUTER_FORWARDS = "router-forwards"
#: The router's forwards on the console address to the console proxy VM
#: (components/model/consoles.console_forwards, or consoles.NO_CONSOLE): created by Pulumi,
#: written by the registration once the console proxy runs; the router polls it.
PARAM_CONSOLE_FORWARDS = "console-forwards"
#: Written by the first management server once the cloud is bootstrapped (schema deployed,
#: admin password set, API keys stored): from then on no boot needs the bootstrap grants
#: (BOOTSTRAP_POLICIES), and the program stops declaring them. Alone under its own path
#: (BOOTSTRAP_PATH) so that a lookup of it reads no other parameter.
BOOTSTRAP_PATH = "bootstrap"
PARAM_BOOTSTRAPPED = f"{BOOTSTRAP_PATH}/done"
#: Names of the management role's inline policies that only bootstrapping needs (the RDS
#: master secret, the admin login, the first values of the secrets): the first management
#: server deletes them itself once it wrote PARAM_BOOTSTRAPPED (iam:DeleteRolePolicy).
BOOTSTRAP_POLICY = "cloudstack-ec2-bootstrap"
BOOTSTRAP_MASTER_POLICY = "cloudstack-ec2-bootstrap-db-master"
BOOTSTRAP_POLICIES = (BOOTSTRAP_POLICY, BOOTSTRAP_MASTER_POLICY)
#: SSM refuses empty String parameters: the value of "no forwards".
NO_FORWARDS = "none"


PARAMETERS = (PARAM_DB_ENDPOINT, PARAM_EFS_DNS, PARAM_DB_MASTER_SECRET, PARAM_MANAGEMENT_SSH_KEY,
              PARAM_CLOUDSTACK_VERSION, PARAM_ROUTER_FORWARDS, PARAM_CONSOLE_FORWARDS, PARAM_BOOTSTRAPPED)

_STACK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: The per-deployment part: 4 random bytes as hex (pulumi_random.RandomId byte_length=4).
DEPLOYMENT_ID_BYTES = 4
_DEPLOYMENT_ID = re.compile(r"^[0-9a-f]{8}$")


def stack_prefix(stack: str) -> str:
    """`/cloudstack-ec2/<stack>`: the root of every per-stack name (the scripts get it as CSEC2_PREFIX)."""
    if not isinstance(stack, str) or not _STACK.match(stack):
        raise ValueError(f"stack name {stack!r} is not accepted: use letters, digits, '.', '_' or '-' (max 63)")
    return f"/{PROJECT}/{stack}"


def parameter_root(stack: str, deployment_id: str = "") -> str:
    """`/cloudstack-ec2/<stack>/<deployment id>`: the root of the deployment's SSM
    parameters, which the scripts get as CSEC2_PREFIX (no id: a stack deployed before
    the id existed)."""
    if not deployment_id:
        return stack_prefix(stack)
    if not _DEPLOYMENT_ID.match(deployment_id):
        raise ValueError(f"deployment id {deployment_id!r} is not {DEPLOYMENT_ID_BYTES * 2} lower-case hex digits")
    return f"{stack_prefix(stack)}/{deployment_id}"


def parameter_name(stack: str, which: str, deployment_id: str = "") -> str:
    """The SSM parameter `<root>/<which>` (the scripts derive it the same way: csec2_name)."""
    return parameter_under(parameter_root(stack, deployment_id), which)


def parameter_under(root: str, which: str) -> str:
    """`<root>/<which>` for one of PARAMETERS, given a root from parameter_root(), or
    `host-ready/<overlay ip>` / `host-ready/*` (the latter only in IAM resources: every
    host's readiness parameter)."""
    if which not in PARAMETERS and not which.startswith(f"{HOST_READY}/"):
        raise ValueError(f"parameter {which!r} is not one of {', '.join(PARAMETERS)}")
    return f"{root}/{which}"


def secret_name_prefix(stack: str, which: str) -> str:
    """Secrets Manager names may not start with '/': drop it, keep the hierarchy."""
    return f"{stack_prefix(stack)[1:]}/{which}-"


def zone_paths(zone_name: str) -> dict[str, str]:
    """Per-zone, per-type directories on the one EFS file system (the management server
    creates them; the registration adds them as primary and secondary storage)."""
    return {"primary": f"/{zone_name}/primary", "secondary": f"/{zone_name}/secondary"}


#: S3 appends a 26-character unique id to a bucket_prefix and names hold at most 63
#: characters (terraform-provider-aws internal/service/s3/bucket.go).
BOOT_BUCKET_PREFIX_MAX = 63 - 26


def boot_bucket_prefix(stack: str) -> str:
    """bucket_prefix of the deployment's boot-script bucket: `cloudstack-ec2-<stack>-`,
    lower-cased with '.' and '_' as '-' (bucket names allow neither upper case nor '_';
    dots would break TLS on virtual-hosted bucket URLs), at most 37 characters."""
    stem = re.sub(r"[^a-z0-9-]", "-", f"{PROJECT}-{stack.lower()}")
    return stem[:BOOT_BUCKET_PREFIX_MAX - 1].rstrip("-") + "-"
