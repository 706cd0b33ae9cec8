"""What every role's user data shares: the boot fields (region, prefix, name, overlay,
waits, bucket) with their rules and boot.env variables, and the envelope.

The user data is a bash script, gzip-compressed (cloud-init detects gzip) so that it
fits EC2's 16 KiB limit. It carries only what the instance needs before its network
works: the static scripts common.sh, overlay-network.sh and the stage-2 launcher
stage2.sh (components/boot/scripts.py), the systemd units, and two environment files
of NON-secret settings; then it runs the launcher, which fetches the role script from
the deployment's private S3 bucket (components/boot/stage2.py), checks its sha256 and
execs it (docs/boot.md). The output is deterministic (gzip mtime 0), so re-rendering
unchanged inputs does not touch the instances.
"""

from __future__ import annotations

import base64
import gzip
import re
from dataclasses import dataclass, fields
from typing import Callable, Mapping, Optional

from components.boot.checks import (
    UserDataError, check_bucket, check_choice, check_fqdn, check_int, check_match, check_prefix,
    check_version)
from components.boot.overlay import OverlayConfig, check_overlay, overlay_environment
from components.boot.scripts import (
    BOOT_LINK, ETC_DIR, LIB_DIR, ROLE_EXTRA_SCRIPTS, ROLE_UNITS, STAGE2_LAUNCHER, UNIT_DIR, embedded_script, load_boot_files,
    strip_comments)
from components.boot.stage2 import stage2_environment
from components.model import ipplan
from components.model import rules

#: EC2 refuses user data larger than this (bytes, before base64).
USER_DATA_LIMIT_BYTES = 16384

OS_CODENAMES = tuple(rules.UBUNTU_RELEASES.values())
DEFAULT_REPO_URL = "https://download.cloudstack.org/ubuntu"
DEFAULT_KEY_URL = "https://download.cloudstack.org/release.asc"

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_URL = re.compile(r"^https://[A-Za-z0-9.-]+(/[A-Za-z0-9._~-]+)*/?$")
#: A KMS key ARN (AWS General Reference, "Amazon Resource Names": arn:partition:kms:region:account:key/id).
_KMS_KEY_ARN = re.compile(r"^arn:aws(-[a-z]+)*:kms:[a-z]{2}(-[a-z]+)+-\d{1,2}:\d{12}:key/[A-Za-z0-9-]{1,64}$")


@dataclass(frozen=True)
class BootWaits:
    """Bounds (seconds) of every wait of the boot scripts."""
    parameters_seconds: int = 3600   # SSM parameters db-endpoint / efs-dns (RDS takes a while)
    secrets_seconds: int = 600       # each secret's value
    database_seconds: int = 1800     # the database accepting connections
    api_seconds: int = 1800          # the API answering on localhost:8080 (first start migrates the DB)
    ssh_key_seconds: int = 7200      # KVM hosts: what the management server publishes (its package
                                     # version, its SSH public key)
    network_seconds: int = 1800      # members: the overlay gateway (router) and the internet through it
    interval_seconds: int = 10       # between two attempts (and the back-off step of retried installs)


# ------------------------------------------------------------------- rules ----

def _check_waits(waits: object) -> BootWaits:
    if not isinstance(waits, BootWaits):
        raise UserDataError(f"waits: expected a BootWaits, got {type(waits).__name__}")
    for f in fields(BootWaits):
        if f.name == "interval_seconds":
            check_int(f"waits.{f.name}", getattr(waits, f.name), 1, 600)
        else:
            check_int(f"waits.{f.name}", getattr(waits, f.name), 1, 86400)
    return waits


def check_common(boot: object, kind: type, role: str) -> None:
    """The fields every `*Boot` has: `boot` must be a `kind` whose overlay is an overlay
    `role` ("router" or "member"). Raises UserDataError naming the field."""
    if not isinstance(boot, kind):
        raise UserDataError(f"expected a {kind.__name__}, got {type(boot).__name__}")
    check_match("aws_region", boot.aws_region, _REGION, "an AWS region such as 'eu-west-1'")  # type: ignore[attr-defined]
    check_prefix("prefix", boot.prefix)  # type: ignore[attr-defined]
    check_fqdn("fqdn", boot.fqdn)  # type: ignore[attr-defined]
    check_overlay(boot.overlay, role)  # type: ignore[attr-defined]
    _check_waits(boot.waits)  # type: ignore[attr-defined]
    check_bucket("boot_bucket", boot.boot_bucket)  # type: ignore[attr-defined]


def check_package_source(boot: object) -> None:
    """The CloudStack package fields of the management server and the KVM hosts."""
    check_version("cloudstack_version", boot.cloudstack_version)  # type: ignore[attr-defined]
    check_choice("os_codename", boot.os_codename, OS_CODENAMES)  # type: ignore[attr-defined]
    check_match("repo_url", boot.repo_url, _URL, "an https:// URL")  # type: ignore[attr-defined]
    check_match("key_url", boot.key_url, _URL, "an https:// URL")  # type: ignore[attr-defined]
    # The key the management server publishes its version and SSH key under, and the only
    # one the hosts accept them under (components/resources/anchor.py).
    check_match("anchor_key_arn", boot.anchor_key_arn, _KMS_KEY_ARN,  # type: ignore[attr-defined]
                "a KMS key ARN such as 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab'")


# ------------------------------------------------------------- environment ----

def common_env(boot, role: str) -> dict[str, str]:
    """The boot.env variables of the fields check_common checked; `role` is the script role."""
    w: BootWaits = boot.waits
    return {
        "CSEC2_ENV_ROLE": role,
        "CSEC2_AWS_REGION": boot.aws_region,
        "CSEC2_PREFIX": boot.prefix,
        "CSEC2_HOSTNAME": boot.fqdn.split(".")[0],
        "CSEC2_FQDN": boot.fqdn,
        "CSEC2_OVERLAY_IP": boot.overlay.ip,
        "CSEC2_OVERLAY_CIDR": boot.overlay.cidr,
        "CSEC2_WAIT_PARAMETERS_SECONDS": str(w.parameters_seconds),
        "CSEC2_WAIT_SECRETS_SECONDS": str(w.secrets_seconds),
        "CSEC2_WAIT_DATABASE_SECONDS": str(w.database_seconds),
        "CSEC2_WAIT_API_SECONDS": str(w.api_seconds),
        "CSEC2_WAIT_SSH_KEY_SECONDS": str(w.ssh_key_seconds),
        "CSEC2_WAIT_NETWORK_SECONDS": str(w.network_seconds),
        "CSEC2_WAIT_INTERVAL_SECONDS": str(w.interval_seconds),
        **({"CSEC2_OVERLAY_GATEWAY": boot.overlay.overlay_gateway} if boot.overlay.role == "member" else {}),
        **(_class_env(boot.overlay.classes) if boot.overlay.role == "member" else {}),
    }


def _class_env(classes: ipplan.AddressClasses) -> dict[str, str]:
    """The address classes the members' firewalls admit (ranges as nftables writes them)."""
    return {
        "CSEC2_INFRA_CIDR": str(classes.infrastructure),
        "CSEC2_MANAGEMENT_RANGE": str(classes.management),
        "CSEC2_HOST_RANGE": str(classes.hosts),
        "CSEC2_SYSTEM_RANGE": str(classes.system),
    }


def package_env(boot) -> dict[str, str]:
    """The boot.env variables of the fields check_package_source checked."""
    return {
        "CSEC2_CLOUDSTACK_VERSION": boot.cloudstack_version,
        "CSEC2_OS_CODENAME": boot.os_codename,
        "CSEC2_CLOUDSTACK_REPO_URL": boot.repo_url.rstrip("/"),
        "CSEC2_CLOUDSTACK_KEY_URL": boot.key_url,
        "CSEC2_ANCHOR_KEY_ARN": boot.anchor_key_arn,
    }


def _env_file(title: str, env: Mapping[str, str]) -> str:
    # KEY="value" lines: read the same way by bash (`source`) and by systemd
    # (EnvironmentFile=); values were checked to hold no quote, '$', '`' or '\'.
    lines = [f"# {title}", "# Written by the cloudstack-ec2 user data. Non-secret settings only."]
    for key, value in env.items():
        if any(c in value for c in "\"$`\\\n\r"):
            raise UserDataError(f"{key}: {value!r} cannot be written to an environment file")
        lines.append(f'{key}="{value}"')
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- envelope ----

_DELIMITER = "CSEC2_END_OF_FILE"
# Part of the rendered bytes; existing instances ignore user data changes
# (components/resources/node.py), so a new name here replaces nothing.
_RENDERED_BY = "components/boot"


def _heredoc(target: str, text: str, mode: str) -> str:
    if not text.endswith("\n"):
        text += "\n"
    if _DELIMITER in text.splitlines():
        raise UserDataError(f"{target}: contains the line {_DELIMITER!r}, which ends the embedded file")
    return f"cat >\"$root{target}\" <<'{_DELIMITER}'\n{text}{_DELIMITER}\nchmod {mode} \"$root{target}\"\n"


def _payload(role: str, env: Mapping[str, str], overlay: OverlayConfig, files: Mapping[str, str]) -> str:
    parts = [
        "#!/bin/bash\n",
        f"# cloudstack-ec2 user data, role {role}: rendered by {_RENDERED_BY} from\n",
        "# non-secret settings; secrets are read at run time from Secrets Manager.\n",
        "# Stage 2 (the role script) comes from S3 (docs/boot.md); log: /var/log/cloudstack-ec2-boot.log\n",
        "set -euo pipefail\n",
        "umask 022\n",
        'root="${CSEC2_ROOT:-}"\n',
        f'mkdir -p "$root{LIB_DIR}" "$root{ETC_DIR}" "$root{UNIT_DIR}" "$root{BOOT_LINK.rsplit("/", 1)[0]}"\n',
    ]
    # overlay-router.sh: the router's part of overlay-network.sh (its overlay unit needs
    # it), kept out of the members' user data (EC2's 16 KiB); console-forwards.sh only on
    # the management servers.
    for name in ("common.sh", STAGE2_LAUNCHER, "overlay-network.sh", *ROLE_EXTRA_SCRIPTS[role]):
        parts.append(_heredoc(f"{LIB_DIR}/{name}", embedded_script(name, files[name]),
                              "0755" if name != "common.sh" else "0644"))
    for unit in ROLE_UNITS[role]:
        parts.append(_heredoc(f"{UNIT_DIR}/{unit}", strip_comments(files[unit], f"userdata/{unit}"), "0644"))
    parts.append(_heredoc(f"{ETC_DIR}/boot.env", _env_file(f"boot settings, role {role}", env), "0644"))
    parts.append(_heredoc(f"{ETC_DIR}/overlay.env",
                          _env_file("overlay-network.sh settings", overlay_environment(overlay)), "0644"))
    parts.append(f'ln -sfn "{LIB_DIR}/{STAGE2_LAUNCHER}" "$root{BOOT_LINK}"\n')
    parts.append(f'exec "$root{LIB_DIR}/{STAGE2_LAUNCHER}"\n')
    return "".join(parts)


def _encode(payload: str, role: str) -> str:
    # mtime=0: the same inputs give the same bytes, so Pulumi sees no change.
    compressed = gzip.compress(payload.encode("utf-8"), compresslevel=9, mtime=0)
    if len(compressed) > USER_DATA_LIMIT_BYTES:
        raise UserDataError(f"user data of role {role} is {len(compressed)} bytes compressed; EC2 accepts at most"
                            f" {USER_DATA_LIMIT_BYTES}")
    return base64.b64encode(compressed).decode("ascii")


def decode_user_data(user_data_base64: str) -> str:
    """The bash script inside rendered user data (for tests and debugging)."""
    return gzip.decompress(base64.b64decode(user_data_base64)).decode("utf-8")


def render_user_data(role: str, environment: Callable[[object], dict[str, str]], boot,
                     files: Optional[Mapping[str, str]]) -> str:
    """Base64 of the gzip'd boot script of `role` ("router", "management", "kvm-host"):
    boot.env is `environment(boot)` (which validates `boot`) plus the stage-2 settings.

    `files`: the userdata/ files (default the package's). Raises UserDataError for a bad
    input or user data over USER_DATA_LIMIT_BYTES compressed."""
    files = files or load_boot_files()
    env = {**environment(boot), **stage2_environment(role, boot.boot_bucket, files)}
    return _encode(_payload(role, env, boot.overlay, files), role)
