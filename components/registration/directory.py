"""The company directory in CloudStack: the bind password setting, the LDAP servers and the
domain links (no Pulumi here). Sources: apache/cloudstack plugins/user-authenticators/ldap
(LdapManagerImpl, LdapConfigurationDaoImpl) and the API contract of the current release.
"""

from __future__ import annotations

from typing import Any

from .base import Kind, Obj, Props, _by, configuration
from .client import LOG, Api, CloudStackError, RegistrationError, aws_session

#: LdapManagerImpl.addConfigurationInternal: the bind with ldap.bind.principal/password failed.
BIND_FAILED = "unable to bind to the given ldap server"


class SecretSetting(Kind):
    """A global setting whose value is a secret (ldap.bind.password): the inputs name the
    Secrets Manager secret and its version, and the value is read only when it is applied, so
    it is in no input, output, state or log. CloudStack stores it encrypted (category Secure).
    A new version of the secret is an update; the value is never read back."""

    kind = "secret setting"
    preexisting = True
    replace_keys = ("name",)
    update_keys = ("secret_arn", "secret_version")

    def label(self, props: Props) -> str:
        return f"secret setting {props.get('name')}"

    def find(self, api: Api, props: Props) -> Obj | None:
        return self.get(api, props["name"], props)

    def get(self, api: Api, id_: str, props: Props) -> Obj | None:
        item = configuration(api, id_)
        if item is None:
            raise CloudStackError(api.endpoint, "listConfigurations", 431, f"CloudStack has no setting named {id_!r}")
        return {"id": id_}

    def converge(self, api: Api, obj: Obj, props: Props) -> Obj:
        # Called on create and on update only (a diff without changes asks CloudStack nothing).
        api.call("updateConfiguration", name=props["name"], value=read_secret(props))
        LOG.info("%s set from %s (value not logged)", self.label(props), props["secret_arn"])
        return obj

    def change(self, api: Api, id_: str, olds: Props, news: Props, changed: list[str]) -> None:
        """converge (which follows) sets the new version's value."""

    def live(self, obj: Obj, props: Props) -> dict[str, Any]:
        return {"name": obj["id"]}

    def remove(self, api: Api, id_: str, props: Props) -> None:
        api.call("resetConfiguration", name=id_)  # back to CloudStack's default (none)


def read_secret(props: Props) -> str:
    """The SecretString of `secret_arn` at `secret_version`, with the stack's AWS identity."""
    from botocore.exceptions import BotoCoreError, ClientError

    arn, version = props["secret_arn"], props.get("secret_version") or None
    if not arn:
        raise RegistrationError(f"{props['name']}: no secret given (secret_arn is empty)")
    client = aws_session(props.get("aws"), props["region"]).client("secretsmanager", region_name=props["region"])
    try:
        value = client.get_secret_value(SecretId=arn, **({"VersionId": version} if version else {}))
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        raise RegistrationError(f"{props['name']}: cannot read the secret {arn} (version {version}): {code}. The "
                                f"registration uses the stack's identity (aws:profile, aws:assumeRoles), which needs "
                                f"secretsmanager:GetSecretValue on it") from None
    except BotoCoreError as e:
        raise RegistrationError(f"{props['name']}: cannot read the secret {arn}: {type(e).__name__}") from None
    text = value.get("SecretString")
    if not text:
        raise RegistrationError(f"{props['name']}: the secret {arn} holds no string")
    return text


class LdapServer(Kind):
    """addLdapConfiguration (global: no domain id), one per directory server; found again by
    host and port (LdapConfigurationDaoImpl: hostname:port is unique per domain binding)."""

    kind = "LDAP server"
    replace_keys = ("hostname", "port")

    def label(self, props: Props) -> str:
        return f"LDAP server {props.get('hostname')}:{props.get('port')}"

    def _items(self, api: Api, props: Props) -> list[Obj]:
        # without domainid and listall: the global configurations only (domain_id IS NULL)
        items = api.list("listLdapConfigurations", "LdapConfiguration", hostname=props["hostname"],
                         port=props["port"])
        return [{**i, "id": f"{i.get('hostname')}:{i.get('port')}"} for i in items]

    def find(self, api: Api, props: Props) -> Obj | None:
        return _by(self._items(api, props), hostname=props["hostname"], port=props["port"])

    def get(self, api: Api, id_: str, props: Props) -> Obj | None:
        return self.find(api, props)

    def make(self, api: Api, props: Props) -> Obj:
        try:
            api.call("addLdapConfiguration", hostname=props["hostname"], port=props["port"])
        except CloudStackError as e:
            if BIND_FAILED in e.text.lower():
                raise RegistrationError(
                    f"{self.label(props)}: CloudStack could not bind to it ({e.text}). Check ldap.bindPrincipal "
                    f"and ldap.bindPassword (the directory refuses a wrong password: invalid credentials), that "
                    f"the management server reaches {props['hostname']}:{props['port']} (DNS, routes, firewalls), "
                    f"and with ldaps that the server's certificate is signed by ldap.caCertificate") from None
            raise
        found = self.find(api, props)
        if found is None:
            raise RegistrationError(f"{self.label(props)}: added, but listLdapConfigurations does not show it")
        return found

    def live(self, obj: Obj, props: Props) -> dict[str, Any]:
        return {"hostname": obj.get("hostname"), "port": int(obj.get("port", props["port"]))}

    def remove(self, api: Api, id_: str, props: Props) -> None:
        api.call("deleteLdapConfiguration", hostname=props["hostname"], port=props["port"])


class LdapLink(Kind):
    """linkDomainToLdap: users of a group or OU signing in to a domain become accounts there.
    No command of the current release lists the links (LdapTrustMapDao has no API), so the
    link is known from the state; one domain has at most one (cloud.ldap_trust_map's unique key
    uk_ldap_trust_map__bind_location), and unlinkDomainFromLdap exists only in newer releases."""

    kind = "LDAP domain link"
    replace_keys = ("domain", "type", "ldapdomain", "accounttype")

    def label(self, props: Props) -> str:
        return f"LDAP link of domain {props.get('domain')} to {props.get('type')} {props.get('ldapdomain')}"

    def _domain_id(self, api: Api, path: str) -> str:
        domains = api.list("listDomains", "domain", listall=True)
        found = [d for d in domains if d.get("path") == path]
        if not found:
            raise RegistrationError(f"ldap.links: CloudStack has no domain {path!r} (domains: "
                                    f"{', '.join(sorted(str(d.get('path')) for d in domains))}); create it first "
                                    f"(createDomain) or link an existing one")
        return str(found[0]["id"])

    def find(self, api: Api, props: Props) -> Obj | None:
        return None   # no API lists links: a link made by an earlier, failed run shows as a duplicate

    def make(self, api: Api, props: Props) -> Obj:
        domain_id = self._domain_id(api, props["domain"])
        try:
            api.call("linkDomainToLdap", domainid=domain_id, type=props["type"], ldapdomain=props["ldapdomain"],
                     accounttype=props["accounttype"])
        except CloudStackError as e:
            if "duplicate" in e.text.lower():
                raise RegistrationError(
                    f"{self.label(props)}: domain {props['domain']} is linked already (CloudStack keeps one link "
                    f"per domain and no API of this release shows or removes it). Remove the old link "
                    f"(unlinkDomainFromLdap where the release has it, else as the database's master user: DELETE "
                    f"FROM cloud.ldap_trust_map WHERE domain_id = (SELECT id FROM cloud.domain WHERE uuid = "
                    f"'{domain_id}') AND account_id = 0), then run `pulumi up` again") from None
            raise
        return {"id": domain_id}

    def get(self, api: Api, id_: str, props: Props) -> Obj | None:
        return {"id": id_}

    def remove(self, api: Api, id_: str, props: Props) -> None:
        try:
            api.call("unlinkDomainFromLdap", domainid=id_)
        except CloudStackError as e:
            if e.code != 432:
                raise
            LOG.warning("%s: this CloudStack release has no unlinkDomainFromLdap, so the link stays in "
                        "cloud.ldap_trust_map (unused while no LDAP server is configured). To remove it, as the "
                        "database's master user: DELETE FROM cloud.ldap_trust_map WHERE domain_id = (SELECT id FROM "
                        "cloud.domain WHERE uuid = '%s') AND account_id = 0", self.label(props), id_)
