"""Boot stage 2: the role scripts (router.sh, management-server.sh, kvm-host.sh) as the
deployment's private boot-script bucket holds them (components/resources/bootstore.py),
and the settings with which the user data's launcher (userdata/stage2.sh) fetches one,
checks its sha256 and execs it (docs/boot.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping, Optional

from components.boot.checks import UserDataError, check_bucket
from components.boot.scripts import AGENT_SCRIPT, LIBRARY_SCRIPT, ROLE_SCRIPTS, load_boot_files
from components.model import aws_constraints

#: Where the role scripts go in the deployment's boot-script bucket: one object per
#: script version, named by the sha256 of its bytes (so a changed script is a new
#: object and an instance only ever runs the version its user data names).
STAGE2_KEY_PREFIX = "boot/"
#: Where the first management server keeps the KVM hosts' packages of the deployed version:
#: `packages/<version>/<package>.deb` (userdata/management-server.sh publish_packages).
PACKAGES_KEY_PREFIX = "packages/"


@dataclass(frozen=True)
class BootObject:
    """One role script as the boot-script bucket holds it.

    `content` is the repository file byte for byte (comments kept: S3 has no
    16 KiB limit, and the copy on the instance stays readable); `sha256` is the
    hex digest of its UTF-8 bytes, which the launcher checks; `key` is
    `boot/<role>-<sha256>.sh`."""
    role: str          # "router" | "management" | "kvm-host" | "cloudwatch-agent"
    script: str        # file name on the instance, e.g. "management-server.sh"
    key: str
    sha256: str
    content: str


#: The bucket's objects: each role's script, the CloudWatch agent's installer that every
#: role runs (key `boot/cloudwatch-agent-<sha256>.sh`, CSEC2_AGENT_KEY) and the second part
#: of the shared library that every role script sources (`boot/library-<sha256>.sh`,
#: CSEC2_LIBRARY_KEY).
AGENT_OBJECT = "cloudwatch-agent"
LIBRARY_OBJECT = "library"
STAGE2_SCRIPTS = {**ROLE_SCRIPTS, AGENT_OBJECT: AGENT_SCRIPT, LIBRARY_OBJECT: LIBRARY_SCRIPT}
#: The objects every role reads besides its own script.
SHARED_OBJECTS = (AGENT_OBJECT, LIBRARY_OBJECT)


def boot_object(role: str, files: Optional[Mapping[str, str]] = None) -> BootObject:
    """The S3 object of `role`'s script, or of the agent's installer (AGENT_OBJECT), from
    `files` (default the package's).

    Raises UserDataError for an unknown role or a key S3 would refuse."""
    if role not in STAGE2_SCRIPTS:
        raise UserDataError(f"role: {role!r} is not accepted; one of {', '.join(STAGE2_SCRIPTS)}")
    script = STAGE2_SCRIPTS[role]
    content = (files or load_boot_files())[script]
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()
    key = f"{STAGE2_KEY_PREFIX}{role}-{digest}.sh"
    problems = aws_constraints.S3_OBJECT_KEY.problems(key)
    if problems:  # a role name the key rules refuse: caught here, not at upload
        raise UserDataError(f"boot object key {key!r}: {'; '.join(problems)} [{aws_constraints.S3_OBJECT_KEY.source}]")
    return BootObject(role=role, script=script, key=key, sha256=digest, content=content)


def boot_objects(files: Optional[Mapping[str, str]] = None) -> dict[str, BootObject]:
    """role -> its BootObject, for every role and the agent's installer (AGENT_OBJECT)."""
    files = files or load_boot_files()
    return {role: boot_object(role, files) for role in STAGE2_SCRIPTS}


def stage2_environment(role: str, bucket: str, files: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The CSEC2_STAGE2_* settings of boot.env: where stage2.sh fetches the role script and its sha256."""
    obj = boot_object(role, files)
    return {
        "CSEC2_STAGE2_BUCKET": check_bucket("boot_bucket", bucket),
        "CSEC2_STAGE2_KEY": obj.key,
        "CSEC2_STAGE2_SHA256": obj.sha256,
        "CSEC2_STAGE2_SCRIPT": obj.script,
        # Its sha256 is in its name: csec2_cloudwatch_agent checks the object against it.
        "CSEC2_AGENT_KEY": boot_object(AGENT_OBJECT, files).key,
        # Likewise: stage2.sh installs the library only when its sha256 is the key's.
        "CSEC2_LIBRARY_KEY": boot_object(LIBRARY_OBJECT, files).key,
    }


def s3_object_arn(partition: str, bucket: str, key: str) -> str:
    """ARN of object `key` in `bucket`: S3 ARNs carry neither region nor account
    (Service Authorization Reference, Amazon S3 resource types: arn:${Partition}:s3:::${BucketName}/${ObjectName})."""
    return f"arn:{partition}:s3:::{bucket}/{key}"


def s3_bucket_arn(partition: str, bucket: str) -> str:
    """ARN of `bucket` (arn:${Partition}:s3:::${BucketName})."""
    return f"arn:{partition}:s3:::{bucket}"


def tls_only_bucket_policy(bucket_arn: str) -> dict:
    """A bucket policy refusing every request not made over TLS (S3 User Guide,
    security best practices: deny when aws:SecureTransport is false)."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }
