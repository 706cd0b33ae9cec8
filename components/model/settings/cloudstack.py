"""Settings of CloudStack itself: the release installed, the zone, and the registration
of the cloud through its API.

Pure module (no Pulumi import).
"""

from __future__ import annotations

import re
from typing import Optional

from components.model import rules
from components.model.rules import Pattern, Plain, Range
from components.model.settings.base import Key

#: CloudStack releases this program knows how to install (DEB repository per X.Y). 4.22 is
#: the LTS (the default); 4.23.0.0 is a regular release (apache/cloudstack tag 4.23.0.0)
#: with the same requirements as 4.22: Java 17 (documentation upgrading/_java_version.rst,
#: the packages depend on it), MySQL 8.0 and 8.4 (since 4.20.3), the Ubuntu LTS releases of
#: download.cloudstack.org (its upgrade guide names the noble repository).
SUPPORTED_CLOUDSTACK_RELEASES = ("4.19", "4.20", "4.21", "4.22", "4.23")
#: apache/cloudstack#12417 / PR 12640: MySQL 8.4 (connector 8.4, caching_sha2_password).
MYSQL_84_FIRST_RELEASE = (4, 20, 3)
_NAME = rules.ZONE_NAME
_VERSION = rules.VERSION


def _cloudstack_version(c: rules.Check, version: str) -> str:
    """X.Y or X.Y.Z of a supported release, never 4.19.0."""
    parsed = parse_version(version)
    if parsed is None or f"{parsed[0]}.{parsed[1]}" not in SUPPORTED_CLOUDSTACK_RELEASES:
        c.problem(f"expected X.Y or X.Y.Z of a supported release: {', '.join(SUPPORTED_CLOUDSTACK_RELEASES)}")
    elif parsed == (4, 19, 0):
        # 4.19.0's management server signs its SSH logins to hosts with an RSA key
        # and SHA-1, which the OpenSSH of Ubuntu 22.04/24.04 refuses: addHost fails.
        # 4.19.1 generates an ECDSA key.
        c.problem("4.19.0's management server logs in to KVM hosts with an RSA/SHA-1 SSH key that Ubuntu "
                  "22.04/24.04's OpenSSH refuses, so no host can be added (fixed in 4.19.1); use 4.19 "
                  "(its newest patch release), 4.19.1 or later")
    return version


KEYS: tuple[Key, ...] = (
    Key("cloudstackVersion", "str", "4.22", "CloudStack release (X.Y for the newest patch, or X.Y.Z); one of 4.19..4.23 (4.22: the LTS). Changing it on a deployed stack upgrades CloudStack (README 'Upgrading CloudStack').",
        rule=_cloudstack_version),
    Key("zoneName", "str", "zone1", "CloudStack zone name; also the EFS directory (`/<zone>/primary`, `/<zone>/secondary`).",
        rule=Pattern(_NAME, rules.ZONE_NAME_ACCEPTED + " (it is also a directory name)")),
    Key("registerCloud", "bool", True, "Register zone, pod, clusters, hosts and storage through the CloudStack API.",
        rule=Plain("true or false")),
    Key("apiEndpoint", "str", "", "CloudStack API URL the registration uses; empty: the load balancer's (see HTTPS), else http://<router Elastic IP>:8080/client/api.",
        rule=Pattern(re.compile(r"^https?://[^/\s]+(/\S*)?$"), "an http(s) URL such as http://localhost:8080/client/api", optional=True)),
    Key("registrationTimeoutMinutes", "int", 90, "How long the registration waits for the API keys and the API on first boot (RDS creation, Multi-AZ especially, is part of it).",
        rule=Range(1, 240)),
    Key("systemVmWaitMinutes", "int", 30, "How long the registration waits for the system VM template to be Ready and, once the zone is enabled, for the secondary storage VM and the console proxy to run (1..240).",
        rule=Range(1, 240)),
    Key("destroyWithRunningVms", "bool", False, "Let `pulumi destroy` delete a cloud whose CloudStack still runs VMs (they are lost with it); by default the destroy stops, before anything on AWS is deleted, naming them.",
        rule=Plain("true or false")),
)


def parse_version(text: str) -> Optional[tuple[int, int, Optional[int]]]:
    m = _VERSION.match(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), (int(m.group(3)) if m.group(3) else None)


def supports_mysql_84(cloudstack_version: str) -> bool:
    """X.Y means the newest patch of that release, which for 4.20 is past 4.20.3."""
    parsed = parse_version(cloudstack_version)
    if parsed is None:
        return False
    major, minor, patch = parsed
    if patch is None:
        return (major, minor) >= MYSQL_84_FIRST_RELEASE[:2]
    return (major, minor, patch) >= MYSQL_84_FIRST_RELEASE
