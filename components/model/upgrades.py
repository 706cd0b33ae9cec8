"""Which changes of `cloudstackVersion` a deployed stack accepts: the upgrade paths of
CloudStack's upgrade guides, never a downgrade.

Pure module (no Pulumi import). The stack records the installed version in its
`deployment` output (components/model/deployed.py); `check_version_change` compares the
requested version with it before anything is declared.

Sources:
- Each release's upgrading guide (apache/cloudstack-documentation,
  source/upgrading/index.rst of the release's branch) lists `upgrade/upgrade-<from>.rst` for
  every release back to 4.3: 4.20, 4.21 and 4.22 document an upgrade from 4.19.x and every
  later release. For 4.23.0.0 (a regular release, apache/cloudstack tag 4.23.0.0) only the
  step from 4.22.x was checked (its guide `upgrade-4.23.rst` and the release's notes):
  older stacks upgrade to 4.22 first.
- CloudStack has no downgrade: the first server of a new version upgrades the database
  schema at its start (engine/schema DatabaseUpgradeChecker), and an older server refuses
  a newer schema. Going back is restoring the snapshot taken before the upgrade.
"""

from __future__ import annotations

from typing import Optional

from components.model.settings import Problem
from components.model.settings.cloudstack import parse_version

KEY = "cloudstackVersion"

#: Target release -> the oldest release (of those this program installs) its upgrade
#: guide documents as a starting point.
DOCUMENTED_FROM = {
    "4.19": "4.19",
    "4.20": "4.19",
    "4.21": "4.19",
    "4.22": "4.19",
    "4.23": "4.22",
}


def _release(version: str) -> tuple[int, int]:
    parsed = parse_version(version)
    if parsed is None:
        raise ValueError(f"not a CloudStack version: {version!r}")
    return parsed[0], parsed[1]


def _text(release: tuple[int, int]) -> str:
    return f"{release[0]}.{release[1]}"


def is_change(installed: str, requested: str) -> bool:
    """True when `requested` asks for another version than the recorded `installed` one
    ("" installed: not recorded, nothing to change). "X.Y" and "X.Y.Z" are different
    requests: "4.22" is the newest 4.22 patch release, "4.22.1" exactly that one."""
    return bool(installed) and installed != requested


def check_version_change(installed: str, requested: str) -> Optional[Problem]:
    """The problem with moving a stack from `installed` (as recorded, "X.Y" or "X.Y.Z";
    "" when not recorded) to `requested`, or None when the change is an upgrade the guides
    document (or no change). Names the key, the current and the requested version.

    What only the running servers know is checked by the upgrade itself: "4.22" installed
    (the then newest 4.22.z) and "4.22.1" requested may be a downgrade."""
    if not is_change(installed, requested):
        return None
    old, new = parse_version(installed), parse_version(requested)
    if old is None or new is None:
        return None  # each value's own rule reports it
    old_release, new_release = (old[0], old[1]), (new[0], new[1])
    if new_release < old_release or (new_release == old_release and None not in (old[2], new[2])
                                     and new[2] < old[2]):
        return Problem(KEY, requested, (
            f"the stack runs CloudStack {installed}; {requested} would be a downgrade, which CloudStack "
            f"does not support (its database was upgraded by {installed}): keep {installed} or a newer "
            "release; to go back, restore the database snapshot the upgrade took (README 'Upgrading "
            "CloudStack')"))
    oldest = DOCUMENTED_FROM.get(_text(new_release))
    if new_release != old_release and (oldest is None or old_release < _release(oldest)):
        step = max((t for t, f in DOCUMENTED_FROM.items() if _release(f) <= old_release
                    and _release(t) < new_release), key=_release, default=None)
        return Problem(KEY, requested, (
            f"the stack runs CloudStack {installed}; CloudStack's upgrade guide for {_text(new_release)} "
            f"documents upgrades from {oldest or 'no release this program installs'} on, not from "
            f"{_text(old_release)}: upgrade to {step or 'a documented release'} first, in its own "
            "update, then to " + requested))
    return None
