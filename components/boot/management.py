"""User data of the CloudStack management server (role script userdata/management-server.sh)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields
from typing import Mapping, Optional

from components.boot.checks import UserDataError, check_match, check_str, ip_value
from components.boot.common import (
    DEFAULT_KEY_URL, DEFAULT_REPO_URL, BootWaits, check_common, check_package_source, common_env, package_env,
    render_user_data)
from components.boot.overlay import OverlayConfig
from components.model import regions
from components.model import rules
from components.model.settings.controlplane import MAX_MANAGEMENT_SERVERS

# The zone name comes from the stack settings: checked by the settings' own rule.
_ZONE = rules.ZONE_NAME
_PATH = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
# A secret's ARN, or its name under the project's hierarchy: a bare word could
# be a password passed by mistake.
_SECRET_ID = re.compile(r"^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:|cloudstack-ec2/)"
                        r"[A-Za-z0-9/_+=.@-]{1,400}$")


@dataclass(frozen=True)
class ManagementSecrets:
    """Names or ARNs (NOT values) of the Secrets Manager secrets the management server reads.

    Each starts without a value: the first management server generates it and stores it
    only while the secret has none. The RDS master user's secret is RDS's own; its ARN
    comes from the SSM parameter db-master-secret (components/model/naming.py).
    """
    db_cloud: str         # {"username","password"}: CloudStack's database user
    cloudstack_keys: str  # {"management_key","database_key"}
    admin: str            # {"username","password"}: CloudStack admin
    api_keys: str         # {"apikey","secretkey"}: written by the management server


@dataclass(frozen=True)
class ManagementBoot:
    aws_region: str
    prefix: str
    fqdn: str
    overlay: OverlayConfig           # role "member"; its address is the management IP
    secrets: ManagementSecrets
    boot_bucket: str                 # the deployment's boot-script bucket (BootScriptBucket.bucket_name)
    anchor_key_arn: str              # ManagementServer.anchor_key_arn (check_package_source)
    cloudstack_version: str = "4.22"  # "X.Y" (newest patch) or "X.Y.Z" (pinned)
    os_codename: str = "noble"
    zone_name: str = "zone1"
    efs_mount_point: str = "/mnt/cloudstack-efs"
    repo_url: str = DEFAULT_REPO_URL
    key_url: str = DEFAULT_KEY_URL
    waits: BootWaits = field(default_factory=BootWaits)
    #: The console address's Elastic IP (components/model/consoles.py): written as the
    #: cloud.configuration rows consoleproxy.static.publicIp (and .port = 80) before
    #: the registration starts. "": nothing written.
    console_address: str = ""
    #: This server's index: 0 deploys the schema (the first ever) and publishes what the
    #: hosts trust; the others join the schema it deployed.
    server_index: int = 0
    #: Every management server's overlay address, index order (the `host` setting agents
    #: and system VMs fail over along); (): this server's own address only.
    management_servers: tuple[str, ...] = ()


def _servers_env(boot: ManagementBoot) -> dict[str, str]:
    """CSEC2_MANAGEMENT_INDEX and CSEC2_MANAGEMENT_SERVERS (comma-separated overlay addresses)."""
    index = boot.server_index
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_MANAGEMENT_SERVERS:
        raise UserDataError(f"server_index: {index!r} is not accepted; expected an integer 0..{MAX_MANAGEMENT_SERVERS - 1}")
    servers = tuple(boot.management_servers) or (boot.overlay.ip,)
    if len(servers) > MAX_MANAGEMENT_SERVERS:
        raise UserDataError(f"management_servers: {len(servers)} addresses; at most {MAX_MANAGEMENT_SERVERS} are accepted")
    for i, address in enumerate(servers):
        if ip_value(f"management_servers[{i}]", address, ipaddress.IPv4Address) is None:
            raise UserDataError(f"management_servers[{i}]: {address!r} is not accepted; expected an overlay"
                                " IPv4 address such as '10.100.0.2'")
    if len(set(servers)) != len(servers):
        raise UserDataError(f"management_servers: {list(servers)} is not accepted; each address once")
    if index >= len(servers) or servers[index] != boot.overlay.ip:
        raise UserDataError(f"management_servers: {list(servers)} is not accepted; entry {index} (server_index)"
                            f" must be this server's overlay address {boot.overlay.ip}")
    return {"CSEC2_MANAGEMENT_INDEX": str(index), "CSEC2_MANAGEMENT_SERVERS": ",".join(servers)}


def management_environment(boot: ManagementBoot) -> dict[str, str]:
    """boot.env of the management server (validated; UserDataError names a bad field)."""
    check_common(boot, ManagementBoot, "member")
    check_package_source(boot)
    check_match("zone_name", boot.zone_name, _ZONE, rules.ZONE_NAME_ACCEPTED)
    check_match("efs_mount_point", boot.efs_mount_point, _PATH, "an absolute path such as '/mnt/cloudstack-efs'")
    if ".." in boot.efs_mount_point.split("/") or boot.efs_mount_point.rstrip("/") in ("", "/mnt"):
        raise UserDataError(f"efs_mount_point: {boot.efs_mount_point!r} is not accepted; use a dedicated"
                            " directory such as '/mnt/cloudstack-efs'")
    if not isinstance(boot.secrets, ManagementSecrets):
        raise UserDataError(f"secrets: expected a ManagementSecrets (secret names/ARNs), got {type(boot.secrets).__name__}")
    if boot.console_address != "" and ip_value("console_address", boot.console_address,
                                               ipaddress.IPv4Address) is None:
        raise UserDataError(f"console_address: {boot.console_address!r} is not accepted; expected the console"
                            " Elastic IP as an IPv4 address such as '203.0.113.7', or '' for none")
    return {**common_env(boot, "management"), **package_env(boot),
            "CSEC2_ZONE_NAME": boot.zone_name, "CSEC2_EFS_MOUNT_POINT": boot.efs_mount_point,
            "CSEC2_CONSOLE_ADDRESS": boot.console_address, "CSEC2_DB_CA_BUNDLE_URL": _rds_ca_bundle(boot.aws_region),
            **_secrets_env(boot.secrets), **_servers_env(boot)}


def _rds_ca_bundle(aws_region: str) -> str:
    """The address of the certificates that verify the database's server certificate."""
    bundle = regions.rds_ca_bundle_url(aws_region)
    if bundle is None:
        raise UserDataError(f"aws_region: {aws_region!r} is not accepted; no RDS certificate bundle address is"
                            f" known for its partition (known: {', '.join(regions.RDS_CA_BUNDLE_HOSTS)})")
    return bundle


def _secrets_env(secrets: ManagementSecrets) -> dict[str, str]:
    """CSEC2_SECRET_<FIELD>: each secret's name or ARN, never a value."""
    env = {}
    for f in fields(ManagementSecrets):
        value = getattr(secrets, f.name)
        if not isinstance(value, str):
            check_str(f"secrets.{f.name}", value)
        if not _SECRET_ID.match(value) or any(c in value for c in "\"$`\\\n'"):
            raise UserDataError(f"secrets.{f.name}: {value!r} is not accepted; expected a Secrets Manager secret"
                                " ARN or a name starting with 'cloudstack-ec2/' (never a secret value)")
        env[f"CSEC2_SECRET_{f.name.upper()}"] = value
    return env


def render_management_user_data(boot: ManagementBoot, *, files: Optional[Mapping[str, str]] = None) -> str:
    """Base64 of the gzip'd boot script of the CloudStack management server."""
    return render_user_data("management", management_environment, boot, files)
