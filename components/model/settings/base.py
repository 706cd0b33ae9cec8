"""What every tier of the settings shares: the namespace, a key's description, a problem.

Pure module (no Pulumi import); the tier modules (network, controlplane, compute, data,
cloudstack) and the parser (components/model/settings/__init__.py) import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from components.model import rules

NAMESPACE = "cloudstack-ec2"

#: The forms of the AWS resource ids a stack may name.
AWS_ID = {
    "vpc": re.compile(r"^vpc-[0-9a-f]{8,17}$"),
    "subnet": re.compile(r"^subnet-[0-9a-f]{8,17}$"),
    "rtb": re.compile(r"^rtb-[0-9a-f]{8,17}$"),
    "ami": re.compile(r"^ami-[0-9a-f]{8,17}$"),
}


#: What a message shows in place of a secret value.
HIDDEN = "(hidden)"


@dataclass(frozen=True)
class Problem:
    key: str
    value: Any
    message: str

    def __str__(self) -> str:
        # A key of another namespace (aws:region) is named as it is.
        name = self.key if ":" in self.key else f"{NAMESPACE}:{self.key}"
        return f"{name} = {self.value!r}: {self.message}"


class SettingsError(ValueError):
    """All problems of a stack's settings, reported together."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the stack settings:\n{lines}")


@dataclass(frozen=True)
class Key:
    """One config key: its type, default and meaning (the README's table is checked against these)."""

    name: str
    kind: str  # str | int | bool | list
    default: Any
    doc: str
    #: The key's own rule (components/model/rules.py): rule(check, value) -> the value Settings holds.
    rule: Optional[rules.Rule] = None
    #: The value holds a secret (all of it or a field, such as ldap's bindPassword): no message,
    #: problem or origin ever shows it.
    secret: bool = False
    #: A list key's example value as JSON text, shown when a value is not a list.
    example: str = ""
