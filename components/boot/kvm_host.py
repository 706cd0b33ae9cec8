"""User data of a KVM host (role script userdata/kvm-host.sh)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

from components.boot.checks import check_match
from components.boot.common import (
    DEFAULT_KEY_URL, DEFAULT_REPO_URL, BootWaits, check_common, check_package_source, common_env, package_env,
    render_user_data)
from components.boot.overlay import OverlayConfig

_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class KvmHostBoot:
    aws_region: str
    prefix: str
    fqdn: str
    overlay: OverlayConfig           # role "member"; its address is the host's (addHost url)
    boot_bucket: str                 # the deployment's boot-script bucket (BootScriptBucket.bucket_name)
    anchor_key_arn: str              # ManagementServer.anchor_key_arn (check_package_source)
    cloudstack_version: str = "4.22"
    os_codename: str = "noble"
    host_user: str = "root"          # the user the management server logs in as (addHost username)
    repo_url: str = DEFAULT_REPO_URL
    key_url: str = DEFAULT_KEY_URL
    waits: BootWaits = field(default_factory=BootWaits)


def kvm_host_environment(boot: KvmHostBoot) -> dict[str, str]:
    """boot.env of a KVM host (validated; UserDataError names a bad field)."""
    check_common(boot, KvmHostBoot, "member")
    check_package_source(boot)
    check_match("host_user", boot.host_user, _USER, "a Linux user name such as 'root' or 'cloudstack'")
    return {**common_env(boot, "kvm-host"), **package_env(boot), "CSEC2_HOST_USER": boot.host_user}


def render_kvm_host_user_data(boot: KvmHostBoot, *, files: Optional[Mapping[str, str]] = None) -> str:
    """Base64 of the gzip'd boot script of a KVM host."""
    return render_user_data("kvm-host", kvm_host_environment, boot, files)
