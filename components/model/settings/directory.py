"""Settings of sign-in with a company directory: the `ldap` object (components/model/ldap.py
holds its fields, rules and what CloudStack makes of them).

Pure module (no Pulumi import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from components.model import ldap
from components.model.rules import CrossKey
from components.model.settings.base import Key

if TYPE_CHECKING:
    from components.model.settings import _Collector

KEYS: tuple[Key, ...] = (
    Key("ldap", "object", None, "Sign-in with LDAP or Active Directory: servers, baseDn, bindPrincipal, "
        "bindPassword (a secret), user and group attributes, ldaps with caCertificate, domain links; absent: "
        "CloudStack's own accounts only (README, \"Signing in with LDAP or Active Directory\").",
        rule=CrossKey("ldap_directory", "its bind password must be a secret, which the stack's secret keys tell"),
        secret=True),
)


def ldap_directory(c: _Collector) -> None:
    """The `ldap` object's fields (ldap.parse_directory), each problem named by its path."""
    c.values["ldap"] = ldap.parse_directory(c.values["ldap"], c.problem, "ldap" in c.secret_keys)


#: This tier's rules that involve several keys, in the order they run.
CROSS_KEY_RULES: tuple[Callable[["_Collector"], None], ...] = (ldap_directory,)
