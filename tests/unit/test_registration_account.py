"""The registration role's rules are exactly the commands the registration, `status` and
the key rotation call: a command added to the code without its rule would be refused by
CloudStack (DynamicRoleBasedAPIAccessChecker) on every cloud bootstrapped since."""

import json
import re
from pathlib import Path

from components.model import registration_account as ra

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = set(json.loads((ROOT / "tests/emulator/contract/commands.json").read_text()))


def called(*paths: str) -> set[str]:
    """Every string literal of the files that names a CloudStack command."""
    found = set()
    for pattern in paths:
        for path in sorted(ROOT.glob(pattern)):
            found |= set(re.findall(r"""["']([a-zA-Z]+)["']""", path.read_text())) & COMMANDS
    return found


def test_the_console_publisher_signs_only_commands_the_role_allows():
    # userdata/console-forwards.sh signs its calls with the keys of the api-keys secret, the
    # registration account's: each command it sends must be one of the role's rules.
    sent = set(re.findall(r"command=([a-zA-Z]+)", (ROOT / "userdata/console-forwards.sh").read_text()))
    assert sent and sent <= set(ra.ROLE_RULES)


def test_the_rules_are_the_commands_the_code_calls():
    assert set(ra.REGISTRATION_COMMANDS) == called("components/registration/*.py", "components/cli/status.py")
    # The rotation signs in as the admin: none of its role and key commands is the role's.
    rotation = called("components/cli/rotate_keys.py") - {"listZones"}
    assert set(ra.RETIRED_RULES) <= rotation and not rotation & set(ra.ROLE_RULES)
    # One allow per command, then the deny of everything else, last.
    assert ra.ROLE_PERMISSIONS == tuple((r, "allow") for r in ra.ROLE_RULES) + (("*", "deny"),)
    assert list(ra.ROLE_RULES) == sorted(set(ra.ROLE_RULES))
    # The only wildcards: `<command>*` for a command of newer releases, matching it alone.
    wide = [r for r in ra.ROLE_RULES if "*" in r]
    assert wide == sorted(f"{c}*" for c in ra.NEWER_RELEASE_COMMANDS)
    assert not [(r, c) for r in wide for c in COMMANDS if allows(r, c)]


def allows(rule: str, command: str) -> bool:
    """apache/cloudstack api/.../acl/Rule.matches: case-insensitive, `*` stands for any run of
    word characters."""
    return re.fullmatch(r"\w*".join(map(re.escape, rule.lower().split("*"))), command.lower()) is not None


def test_every_command_the_registration_sends_is_allowed_those_of_newer_releases_too():
    # The commands the code names as the first argument of Api.call/get/list/job, whether or
    # not the current release has them: a command a newer release brings (sent where it
    # exists) without a rule is refused with 432, the same answer as a release without it.
    sent = set()
    for pattern in ("components/registration/*.py", "components/cli/status.py"):
        for path in sorted(ROOT.glob(pattern)):
            sent |= set(re.findall(r"""\b(?:api|self\.api)\.(?:call|get|list|job)\(\s*["']([a-zA-Z]+)["']""",
                                   path.read_text()))
    assert "unlinkDomainFromLdap" in sent and "addHost" in sent
    assert sorted(c for c in sent if not any(allows(r, c) for r in ra.ROLE_RULES)) == []
