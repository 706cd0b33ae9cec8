"""The rules of the renderer's plain inputs, shared by every role.

Each check takes the input's name and value, returns the value when it is accepted and
raises UserDataError naming the field, the value and what is accepted otherwise. Values
that come from the stack settings are checked by the settings' own rules
(components/model/rules.py); only the rules of values that do not come from settings
live here.
"""

from __future__ import annotations

import re

from components.model import aws_constraints
from components.model import rules

#: CloudStack releases from which the management package ships the system VM
#: template and registers it itself (nothing to seed): the oldest supported.
FIRST_SUPPORTED_CLOUDSTACK = (4, 16)


class UserDataError(ValueError):
    """A bad renderer input; the message names the field, the value and what is accepted."""


# The prefix as components.model.naming.parameter_root builds it (the deployment id is optional:
# stacks deployed before it existed keep /cloudstack-ec2/<stack>).
_PREFIX = re.compile(r"^/cloudstack-ec2/[A-Za-z0-9][A-Za-z0-9._-]{0,62}(/[0-9a-f]{8})?$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_VERSION = rules.VERSION
# Things that look like credentials: an input with one is refused outright.
_SECRET_LIKE = (
    (re.compile(r"(?:A3T[A-Z0-9]|AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}"), "an AWS access key id"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"(?i)(passw(or)?d|passwd|pwd|secret_?key|api_?key|token)\s*[=:]"), "a credential assignment"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "credentials in a URL"),
)


def check_str(name: str, value: object) -> str:
    """`value` when it is a plain str that can be rendered: no Pulumi Output, nothing that
    looks like a credential, no quote, '$', '`', '\\' or line break."""
    if not isinstance(value, str):
        raise UserDataError(
            f"{name}: expected a plain str, got {type(value).__name__} {value!r}"
            " (resolve Pulumi Outputs with .apply() before rendering)")
    for pattern, what in _SECRET_LIKE:
        if pattern.search(value):
            raise UserDataError(f"{name}: the value looks like {what}; secret values are never rendered"
                                " into user data (the scripts read them from Secrets Manager)")
    if any(c in value for c in "\"$`\\\n\r'"):
        raise UserDataError(f"{name}: {value!r} contains a quote, '$', '`', '\\' or a line break")
    return value


def ip_value(name: str, value: object, kind: type):
    """`value` (a plain str, checked as check_str does) as `kind` (ipaddress.IPv4Address,
    IPv4Interface or IPv4Network), or None when it does not parse: the caller raises
    with what it accepts."""
    check_str(name, value)
    try:
        return kind(value)
    except ValueError:
        return None


def check_match(name: str, value: object, pattern: re.Pattern, accepted: str) -> str:
    """`value` when `pattern` matches it; `accepted` says what does in the error."""
    check_str(name, value)
    if not pattern.match(value):  # type: ignore[arg-type]
        raise UserDataError(f"{name}: {value!r} is not accepted; expected {accepted}")
    return value  # type: ignore[return-value]


def check_int(name: str, value: object, low: int, high: int) -> int:
    """`value` when it is an int (not a bool) in low..high."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserDataError(f"{name}: expected an int in {low}..{high}, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise UserDataError(f"{name}: {value} is out of range; accepted {low}..{high}")
    return value


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """`value` when it is one of `allowed`."""
    check_str(name, value)
    if value not in allowed:
        raise UserDataError(f"{name}: {value!r} is not accepted; one of {', '.join(allowed)}")
    return value  # type: ignore[return-value]


def check_prefix(name: str, value: object) -> str:
    """The deployment's parameter root, '/cloudstack-ec2/<stack>[/<deployment id>]'."""
    return check_match(name, value, _PREFIX, "'/cloudstack-ec2/<stack>[/<deployment id>]' (see parameter_root())")


def check_fqdn(name: str, value: object) -> str:
    """A lower-case fully qualified name of at least two DNS labels, at most 253 characters."""
    check_str(name, value)
    labels = value.split(".")  # type: ignore[union-attr]
    if len(labels) < 2 or len(value) > 253 or not all(_LABEL.match(x) for x in labels):  # type: ignore[arg-type]
        raise UserDataError(f"{name}: {value!r} is not accepted; expected a lower-case fully qualified name"
                            " such as 'mgmt.cloudstack.internal' (at least two labels)")
    return value  # type: ignore[return-value]


def check_version(name: str, value: object) -> str:
    """A CloudStack release 'X.Y' or 'X.Y.Z', FIRST_SUPPORTED_CLOUDSTACK or newer."""
    check_match(name, value, _VERSION, "'X.Y' or 'X.Y.Z', e.g. '4.22'")
    m = _VERSION.match(value)  # type: ignore[arg-type]
    assert m
    if (int(m.group(1)), int(m.group(2))) < FIRST_SUPPORTED_CLOUDSTACK:
        first = ".".join(map(str, FIRST_SUPPORTED_CLOUDSTACK))
        raise UserDataError(f"{name}: {value!r} is older than {first}, the first release that registers its"
                            f" system VM template itself; accepted: {first} or newer")
    return value  # type: ignore[return-value]


def check_bucket(name: str, value: object) -> str:
    """An S3 bucket name as S3 accepts it (components/model/aws_constraints.py names the source)."""
    check_str(name, value)
    problems = aws_constraints.S3_BUCKET_NAME.problems(value)  # type: ignore[arg-type]
    if problems:
        raise UserDataError(f"{name}: {value!r} is not accepted; an S3 bucket name {'; '.join(problems)}"
                            f" [{aws_constraints.S3_BUCKET_NAME.source}]")
    return value  # type: ignore[return-value]
