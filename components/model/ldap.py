"""Signing in with a company directory (LDAP or Active Directory): the stack's `ldap` key,
its rules, the CloudStack settings it becomes and the searches CloudStack then runs.

Pure module (no Pulumi import). Sources, all apache/cloudstack
plugins/user-authenticators/ldap/src/main/java/org/apache/cloudstack/ldap/:

- LdapConfiguration.java: the `ldap.*` ConfigKeys, their defaults, and their scope (every one
  Domain-scoped in 4.19..4.22: a domain's own value, else the global one, `ConfigKey.valueIn`).
- LdapManagerImpl.java: addLdapConfiguration binds with the bind principal and password at
  once ("Unable to bind to the given LDAP server"), so the settings come first;
  linkDomainToLdap accepts account type 0 (user) or 2 (domain admin) and type GROUP or OU.
- OpenLdapUserManagerImpl.java / ADLdapUserManagerImpl.java: the search filters (below).
- LdapContextFactory.java: LDAPS is on when ldap.truststore and ldap.truststore.password are
  set (the `ssl` security protocol, javax.net.ssl.trustStore).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn

from components.model.suggest import did_you_mean

#: ldap.provider: which user manager CloudStack uses (LdapUserManager.Provider).
PROVIDERS = ("openldap", "microsoftad")
#: The defaults of LdapConfiguration.java's ConfigKeys, by the stack's field name.
DEFAULTS = {
    "provider": "openldap",
    "userObject": "inetOrgPerson",
    "usernameAttribute": "uid",
    "memberOfAttribute": "memberof",
    "emailAttribute": "mail",
    "firstNameAttribute": "givenname",
    "lastNameAttribute": "sn",
}
#: The stack's field → CloudStack's setting, for the plain (non-secret) settings.
SETTING_NAMES = {
    "provider": "ldap.provider",
    "baseDn": "ldap.basedn",
    "bindPrincipal": "ldap.bind.principal",
    "userObject": "ldap.user.object",
    "usernameAttribute": "ldap.username.attribute",
    "memberOfAttribute": "ldap.user.memberof.attribute",
    "groupPrincipal": "ldap.search.group.principle",
    "emailAttribute": "ldap.email.attribute",
    "firstNameAttribute": "ldap.firstname.attribute",
    "lastNameAttribute": "ldap.lastname.attribute",
}
BIND_PASSWORD_SETTING = "ldap.bind.password"
TRUSTSTORE_SETTING = "ldap.truststore"
TRUSTSTORE_PASSWORD_SETTING = "ldap.truststore.password"
#: Where every management server keeps the LDAPS truststore (userdata/management-server.sh
#: builds it at boot from the CA secret; ldap.truststore names it).
TRUSTSTORE_PATH = "/etc/cloudstack-ec2/ldap-truststore.p12"
#: linkDomainToLdap's account types (com.cloud.user.Account.Type: NORMAL 0, DOMAIN_ADMIN 2;
#: LdapManagerImpl refuses every other: "accountype should be either 0(normal user) or 2(domain admin)").
ACCOUNT_TYPES = {"user": 0, "domainAdmin": 2}
LINK_TYPES = ("GROUP", "OU")
#: ADLdapUserManagerImpl.getMemberOfAttribute: with ldap.nested.groups.enable (default true)
#: AD is asked with the LDAP_MATCHING_RULE_IN_CHAIN rule, so members of nested groups match.
AD_NESTED_MEMBER_OF = "memberOf:1.2.840.113556.1.4.1941:"
FIELDS = ("provider", "servers", "baseDn", "bindPrincipal", "bindPassword", "userObject", "usernameAttribute",
          "memberOfAttribute", "groupPrincipal", "emailAttribute", "firstNameAttribute", "lastNameAttribute",
          "ldaps", "caCertificate", "links")
# RFC 4512 1.4: an attribute description is a keystring (ALPHA *(ALPHA / DIGIT / "-")) or a numeric OID.
_ATTRIBUTE = re.compile(r"^([A-Za-z][A-Za-z0-9-]{0,63}|\d+(\.\d+)+)$")
# RFC 1123 host names.
_HOST = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*$")
# A CloudStack domain's path as listDomains reports it: ROOT, ROOT/sales, ROOT/sales/emea.
_DOMAIN_PATH = re.compile(r"^ROOT(/[^/\s][^/]{0,254})*$")
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----")
# RFC 4515 3: in a filter's assertion value '(', ')', '*' and NUL are syntax, and '\' starts a
# two-hex-digit escape (\28 is '(').
_FILTER_VALUE = re.compile(r"^(?:[^()*\\\0]|\\[0-9A-Fa-f]{2})*$")
#: Why a group's DN must read as a filter value (groupPrincipal, a GROUP link's name).
_GROUP_IN_FILTER = ("CloudStack puts a group's DN into its search filter as it is "
                    "(OpenLdapUserManagerImpl.getMemberOfGroupString), where '(', ')', '*' and '\\' are filter "
                    "syntax (RFC 4515): write them as the escapes \\28, \\29, \\2a (also valid in a DN); a DN "
                    "with an escaped character such as '\\,' cannot be matched")


@dataclass(frozen=True)
class LdapServer:
    host: str
    port: int


@dataclass(frozen=True)
class LdapLink:
    """linkDomainToLdap: users of `name` (a group's or an OU's DN) signing in to `domain`
    become accounts of `account_type` there at their first sign-in."""

    domain: str
    type: str
    name: str
    account_type: str

    @property
    def account_type_id(self) -> int:
        return ACCOUNT_TYPES[self.account_type]


@dataclass(frozen=True)
class LdapDirectory:
    servers: tuple[LdapServer, ...]
    base_dn: str
    bind_principal: str
    #: the password itself, only in memory: the stack keeps it in Secrets Manager
    bind_password: str = field(repr=False, compare=False)
    provider: str = DEFAULTS["provider"]
    user_object: str = DEFAULTS["userObject"]
    username_attribute: str = DEFAULTS["usernameAttribute"]
    member_of_attribute: str = DEFAULTS["memberOfAttribute"]
    group_principal: str = ""
    email_attribute: str = DEFAULTS["emailAttribute"]
    first_name_attribute: str = DEFAULTS["firstNameAttribute"]
    last_name_attribute: str = DEFAULTS["lastNameAttribute"]
    ldaps: bool = False
    ca_certificate: str = field(default="", repr=False)
    links: tuple[LdapLink, ...] = ()

    def settings(self) -> dict[str, str]:
        """CloudStack's `ldap.*` settings (name → value) from the stack's fields, the bind
        password and the truststore left out. An unset optional one (groupPrincipal) is
        absent: it must stay NULL, since OpenLdapUserManagerImpl adds the principle group's
        filter for any non-null value, "" included."""
        values = {"provider": self.provider, "baseDn": self.base_dn, "bindPrincipal": self.bind_principal,
                  "userObject": self.user_object, "usernameAttribute": self.username_attribute,
                  "memberOfAttribute": self.member_of_attribute, "groupPrincipal": self.group_principal,
                  "emailAttribute": self.email_attribute, "firstNameAttribute": self.first_name_attribute,
                  "lastNameAttribute": self.last_name_attribute}
        return {SETTING_NAMES[k]: v for k, v in values.items() if v}

    @property
    def member_of(self) -> str:
        """The membership attribute CloudStack's filters use (the AD manager ignores the setting)."""
        return AD_NESTED_MEMBER_OF if self.provider == "microsoftad" else self.member_of_attribute


# --------------------------------------------------------------------------- the filters
# What CloudStack sends the directory, built exactly as the user managers build it: the
# values are put in as they are (only a username is escaped, LdapUtils.escapeLDAPSearchFilter).


def escape(text: str) -> str:
    """LdapUtils.escapeLDAPSearchFilter: '\\', '*', '(', ')' and NUL as RFC 4515 escapes."""
    table = {"\\": "\\5c", "*": "\\2a", "(": "\\28", ")": "\\29", "\0": "\\00"}
    return "".join(table.get(c, c) for c in text)


def _member_of(directory: LdapDirectory, group: str) -> str:
    # OpenLdapUserManagerImpl.getMemberOfGroupString: "(" + memberOf + "=" + group + ")"
    return f"({directory.member_of}={group})" if group else ""


def users_filter(directory: LdapDirectory, username: Optional[str] = None, mapped_groups: tuple[str, ...] = ()) -> str:
    """OpenLdapUserManagerImpl.generateSearchFilter (the AD manager inherits it): the users
    listLdapUsers / importLdapUsers (no name) / a sign-in without a domain link look for, under
    ldap.basedn: `(&(objectClass=<user object>)(<username attribute>=<name or *>)
    [(|(<memberOf>=<group>)...)][(<memberOf>=<ldap.search.group.principle>)])`. A name is
    escaped twice: LdapManagerImpl.getUser escapes it, then getUsernameFilter again."""
    groups = "".join(_member_of(directory, g) for g in mapped_groups)
    name = "*" if username is None else escape(escape(username))
    return (f"(&(objectClass={directory.user_object})({directory.username_attribute}={name})"
            f"{f'(|{groups})' if groups else ''}{_member_of(directory, directory.group_principal)})")


def link_search(directory: LdapDirectory, link: LdapLink, username: str) -> tuple[str, str]:
    """(search base, filter) of OpenLdapUserManagerImpl.getUser(username, type, name): how a
    user signing in to a linked domain is looked up. OU: under the OU, any member; GROUP: under
    ldap.basedn, with `(<memberOf>=<group DN>)`. CloudStack accepts the sign-in only when
    exactly one entry matches (searchUser), then binds as that entry's DN with the password.
    The username is escaped twice: LdapManagerImpl.getUser escapes it, then getUsernameFilter
    escapes the result again (only names with '\\', '*', '(' or ')' differ)."""
    base = link.name if link.type == "OU" else directory.base_dn
    member = _member_of(directory, link.name) if link.type == "GROUP" else ""
    return base, (f"(&(objectClass={directory.user_object})({directory.username_attribute}="
                  f"{escape(escape(username))}){member})")


def return_attributes(directory: LdapDirectory) -> tuple[str, ...]:
    """LdapConfiguration.getReturnAttributes: what CloudStack reads of a user entry."""
    return (directory.username_attribute, directory.email_attribute, directory.first_name_attribute,
            directory.last_name_attribute, "cn", "userAccountControl", directory.member_of_attribute)


# --------------------------------------------------------------------------- parsing

Report = Callable[[str, Any, str], None]


def is_filter_value(text: str) -> bool:
    """`text` can stand in an RFC 4515 filter as it is (no '(', ')', '*', NUL; '\\' only as \\XX)."""
    return bool(_FILTER_VALUE.match(text))


def is_dn(text: str) -> bool:
    """An RFC 4514 distinguished name (ldap3's parser: every RDN type=value, specials escaped)."""
    try:
        return bool(text) and bool(parse_dn(text))
    except LDAPInvalidDnError:
        return False


def parse_directory(raw: Any, report: Report, secret: bool) -> Optional[LdapDirectory]:
    """The `ldap` object (already parsed JSON; None: no directory). `report(key, value, message)`
    gets each problem, keys like `ldap.servers[0].port`; `secret`: the stack holds the object as
    a Pulumi secret (`pulumi config set --secret --path ldap.bindPassword ...`), which a bind
    password needs. Returns None when there is no directory or any problem."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        report("ldap", raw, "expected an object with servers, baseDn, bindPrincipal, bindPassword, ...")
        return None
    problems: list[tuple[str, Any, str]] = []

    def bad(key: str, value: Any, message: str) -> None:
        problems.append((key, value, message))

    for name in sorted(set(raw) - set(FIELDS)):
        # its value is not shown: a misspelt secret field (bindPasword) would print the secret
        bad(f"ldap.{name}", "(not shown)", " ".join(filter(None, (
            "unknown field;", did_you_mean(str(name), FIELDS), f"known: {', '.join(FIELDS)}"))))
    values = {k: _text(raw, k, bad) for k in (*DEFAULTS, "baseDn", "bindPrincipal", "groupPrincipal")}
    values = {k: v if v or k not in DEFAULTS else DEFAULTS[k] for k, v in values.items()}
    if values["provider"] not in PROVIDERS:
        bad("ldap.provider", values["provider"], f"one of {', '.join(PROVIDERS)} (ldap.provider)")
    for key in ("userObject", "usernameAttribute", "memberOfAttribute", "emailAttribute", "firstNameAttribute",
                "lastNameAttribute"):
        if not _ATTRIBUTE.match(values[key]):
            bad(f"ldap.{key}", values[key], "an LDAP attribute or object class name such as "
                f"{DEFAULTS[key]} (letters, digits and '-', starting with a letter; RFC 4512)")
    for key, required in (("baseDn", True), ("bindPrincipal", True), ("groupPrincipal", False)):
        if values[key] and not is_dn(values[key]):
            bad(f"ldap.{key}", values[key], "not a distinguished name such as CN=CloudStack,CN=Users,DC=example,"
                "DC=com (RFC 4514: type=value pairs separated by ',', special characters escaped with '\\')")
        elif required and not values[key]:
            bad(f"ldap.{key}", "", "required: a distinguished name such as DC=example,DC=com")
    if values["groupPrincipal"] and not is_filter_value(values["groupPrincipal"]):
        bad("ldap.groupPrincipal", values["groupPrincipal"], _GROUP_IN_FILTER)
    password = raw.get("bindPassword")
    if password in (None, ""):
        bad("ldap.bindPassword", "", "required: the bind principal's password, as a secret: pulumi config set "
            "--secret --path 'ldap.bindPassword' <password>")
    elif not isinstance(password, str):
        bad("ldap.bindPassword", "(hidden)", "expected a string")
    elif not secret:
        bad("ldap.bindPassword", "(hidden)", "must be a secret, or it would be stored in plain text in the stack "
            "file: pulumi config set --secret --path 'ldap.bindPassword' <password>")
    ldaps, ca = _ldaps(raw, bad, secret)
    servers = _servers(raw.get("servers"), ldaps, bad)
    links = _links(raw.get("links"), bad)
    for key, value, message in problems:
        report(key, value, message)
    if problems:
        return None
    return LdapDirectory(servers=servers, base_dn=values["baseDn"], bind_principal=values["bindPrincipal"],
                         bind_password=password, provider=values["provider"], user_object=values["userObject"],
                         username_attribute=values["usernameAttribute"],
                         member_of_attribute=values["memberOfAttribute"], group_principal=values["groupPrincipal"],
                         email_attribute=values["emailAttribute"], first_name_attribute=values["firstNameAttribute"],
                         last_name_attribute=values["lastNameAttribute"], ldaps=ldaps, ca_certificate=ca, links=links)


def _text(raw: Mapping[str, Any], key: str, bad: Report) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        bad(f"ldap.{key}", value, "expected a string")
        return ""
    return value.strip()


def _ldaps(raw: Mapping[str, Any], bad: Report, secret: bool) -> tuple[bool, str]:
    ldaps = raw.get("ldaps", False)
    if isinstance(ldaps, str) and ldaps.lower() in ("true", "false"):
        ldaps = ldaps.lower() == "true"
    if not isinstance(ldaps, bool):
        bad("ldap.ldaps", ldaps, "true or false")
        return False, ""
    ca = raw.get("caCertificate") or ""
    if not isinstance(ca, str):
        bad("ldap.caCertificate", "(not shown)", "expected the PEM text of the directory's CA certificate(s)")
        return ldaps, ""
    if ldaps and not ca:
        bad("ldap.caCertificate", "", "required with ldaps: the PEM certificate(s) of the CA that signed the "
            "directory servers' certificates (every management server trusts only them for LDAPS)")
    elif ca and not _PEM.search(ca):
        bad("ldap.caCertificate", "(not shown)", "no PEM certificate (-----BEGIN CERTIFICATE----- ... "
            "-----END CERTIFICATE-----) in it")
    elif ca and not ldaps:
        bad("ldap.caCertificate", "(not shown)", "given without ldaps: true; set ldaps or remove it")
    elif ca and not secret:
        bad("ldap.caCertificate", "(not shown)", "must be set as a secret like the bind password: pulumi config "
            "set --secret --path 'ldap.caCertificate' \"$(cat ca.pem)\"")
    return ldaps, ca.strip() + "\n" if ca else ""


def _servers(raw: Any, ldaps: bool, bad: Report) -> tuple[LdapServer, ...]:
    """Host and port of each server (several: replicas, CloudStack's provider URL lists them all)."""
    if not isinstance(raw, list) or not raw:
        bad("ldap.servers", raw, "required: a list of {host, port}, e.g. [{host: dc1.example.com, port: 389}]")
        return ()
    out = []
    for i, item in enumerate(raw):
        key = f"ldap.servers[{i}]"
        if not isinstance(item, Mapping) or set(item) - {"host", "port"}:
            bad(key, item, "expected {host, port}")
            continue
        host = str(item.get("host") or "").strip()
        if not (_HOST.match(host) or _is_ip(host)):
            bad(f"{key}.host", item.get("host"), "a host name such as dc1.example.com or an IP address")
        port = item.get("port", 636 if ldaps else 389)
        if isinstance(port, str) and port.strip().isdigit():
            port = int(port)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            bad(f"{key}.port", port, "a TCP port 1..65535 (389 for LDAP, 636 for LDAPS)")
            continue
        out.append(LdapServer(host, port))
    if len(set(out)) != len(out):
        bad("ldap.servers", raw, "each host and port at most once (CloudStack refuses a duplicate configuration)")
    return tuple(out)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _links(raw: Any, bad: Report) -> tuple[LdapLink, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        bad("ldap.links", raw, "a list of {domain, type, name, accountType}")
        return ()
    out = []
    for i, item in enumerate(raw):
        key = f"ldap.links[{i}]"
        if not isinstance(item, Mapping) or set(item) - {"domain", "type", "name", "accountType"}:
            bad(key, item, "expected {domain, type, name, accountType}")
            continue
        domain = str(item.get("domain") or "ROOT").strip()
        kind = str(item.get("type") or "").strip().upper()
        name = str(item.get("name") or "").strip()
        account = item.get("accountType", "user")
        if not _DOMAIN_PATH.match(domain):
            bad(f"{key}.domain", domain, "a CloudStack domain's path: ROOT, or ROOT/<child>/...")
        if kind not in LINK_TYPES:
            bad(f"{key}.type", item.get("type"), "GROUP or OU (linkDomainToLdap)")
        if not is_dn(name):
            bad(f"{key}.name", name, "the distinguished name of the group or OU, e.g. CN=CloudStack,CN=Users,"
                "DC=example,DC=com")
        elif kind == "GROUP" and not is_filter_value(name):
            bad(f"{key}.name", name, _GROUP_IN_FILTER)
        if account not in ACCOUNT_TYPES:
            bad(f"{key}.accountType", account, "user or domainAdmin: linkDomainToLdap creates only normal users "
                "(account type 0) or domain admins (2)")
            continue
        out.append(LdapLink(domain, kind, name, account))
    domains = [link.domain for link in out]
    if len(set(domains)) != len(domains):
        # cloud.ldap_trust_map's unique key uk_ldap_trust_map__bind_location (domain_id, account_id):
        # one domain link (account 0) per domain.
        bad("ldap.links", domains, "each domain at most once: CloudStack links a domain to one group or OU")
    return tuple(out)
