"""The boot scripts each instance runs: user data and the stage-2 role scripts, rendered
from the files in the top-level ``userdata/`` folder.

Pure: imports ``components.model`` and the standard library, never Pulumi. The
components resolve their Outputs, build one of the frozen ``*Boot`` dataclasses from
PLAIN values and call ``render_*_user_data``, which returns the text for
``aws.ec2.Instance(user_data_base64=...)``. No secret value is ever an input: the
scripts read secrets from Secrets Manager at run time; only the secrets' names/ARNs are
rendered. Tested by rendering and by running the scripts against recording fakes
(tests/userdata).

One module per part, each importing only those above it:

- ``checks``: the rules of plain inputs and ``UserDataError``.
- ``scripts``: the ``userdata/`` files, where they go on the instance, the embedded copy.
- ``stage2``: the role scripts as objects of the boot-script bucket, and the launcher's settings.
- ``overlay``: ``OverlayConfig``, the overlay network every role sets up.
- ``common``: the fields every role shares and the envelope (gzip, base64, EC2's 16 KiB).
- ``router``, ``management``, ``kvm_host``: one ``*Boot`` and its renderer per role.

The public names are re-exported here: a caller (the program, the boot-script bucket,
the tests) uses a renderer together with its ``*Boot``, the ``OverlayConfig`` and the
boot objects, which live in different modules; ``boot.X`` keeps each call site to one
short prefix and leaves the modules free to be regrouped. The rules the modules share
(``checks``, ``common.check_*``) are not re-exported: they are this package's own.
"""

from components.boot.checks import FIRST_SUPPORTED_CLOUDSTACK, UserDataError
from components.boot.common import (
    DEFAULT_KEY_URL, DEFAULT_REPO_URL, OS_CODENAMES, USER_DATA_LIMIT_BYTES, BootWaits, decode_user_data)
from components.boot.kvm_host import KvmHostBoot, kvm_host_environment, render_kvm_host_user_data
from components.boot.management import (
    ManagementBoot, ManagementSecrets, management_environment, render_management_user_data)
from components.boot.overlay import OverlayConfig, overlay_environment
from components.boot.router import RouterBoot, RouterPairBoot, render_router_user_data, router_environment
from components.boot.scripts import (
    BOOT_LINK, DEDENTED_SCRIPTS, ETC_DIR, LIB_DIR, ROLE_SCRIPTS, ROLE_UNITS, STAGE2_LAUNCHER, UNIT_DIR,
    dedent_shell, embedded_script, load_boot_files, strip_comments)
from components.boot.stage2 import (
    AGENT_OBJECT, LIBRARY_OBJECT, SHARED_OBJECTS, PACKAGES_KEY_PREFIX, STAGE2_KEY_PREFIX, BootObject, boot_object, boot_objects, s3_bucket_arn, s3_object_arn, stage2_environment,
    tls_only_bucket_policy)

__all__ = [
    "USER_DATA_LIMIT_BYTES", "FIRST_SUPPORTED_CLOUDSTACK", "OS_CODENAMES", "DEFAULT_REPO_URL", "DEFAULT_KEY_URL",
    "UserDataError", "OverlayConfig", "BootWaits", "ManagementSecrets",
    "RouterBoot", "RouterPairBoot", "ManagementBoot", "KvmHostBoot",
    "router_environment", "management_environment", "kvm_host_environment", "overlay_environment",
    "LIB_DIR", "ETC_DIR", "UNIT_DIR", "BOOT_LINK", "ROLE_SCRIPTS", "ROLE_UNITS", "STAGE2_LAUNCHER",
    "DEDENTED_SCRIPTS", "strip_comments", "dedent_shell", "embedded_script", "load_boot_files",
    "AGENT_OBJECT", "LIBRARY_OBJECT", "SHARED_OBJECTS", "PACKAGES_KEY_PREFIX", "STAGE2_KEY_PREFIX", "BootObject", "boot_object", "boot_objects", "stage2_environment",
    "s3_object_arn", "s3_bucket_arn", "tls_only_bucket_policy",
    "decode_user_data",
    "render_router_user_data", "render_management_user_data", "render_kvm_host_user_data",
]
