"""The emulator's LDAP commands refuse what LdapManagerImpl refuses (sources beside each rule
in emulator/server.py), and addLdapConfiguration binds to the server as CloudStack does."""

from __future__ import annotations

import pytest
import requests

from emulator import slapd
from emulator.server import Emulator, signature_of

#: How LdapAddConfigurationCmd / LdapDeleteConfigurationCmd report LdapManagerImpl's refusals
#: (e.toString() of the InvalidParameterValueException)
INVALID = "com.cloud.exception.InvalidParameterValueException:"


@pytest.fixture
def emu():
    e = Emulator().start()
    yield e
    e.stop()


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    found, proc = slapd.start(tmp_path_factory.mktemp("slapd"))
    yield found
    slapd.stop(proc)


def call(emu, command, **params):
    p = {"apiKey": emu.apikey, "response": "json", "command": command, **{k: str(v) for k, v in params.items()}}
    p["signature"] = signature_of(p, emu.secretkey)
    r = requests.post(emu.url, data=p, timeout=10)
    return r.status_code, r.json()[f"{command.lower()}response"]


def configure(emu, password=slapd.BIND_PASSWORD):
    for name, value in (("ldap.basedn", slapd.BASE_DN), ("ldap.bind.principal", slapd.BIND_DN),
                        ("ldap.bind.password", password)):
        assert call(emu, "updateConfiguration", name=name, value=value)[0] == 200


def test_add_binds_to_the_server_and_refuses_a_duplicate(emu, directory):
    configure(emu, password="wrong")
    status, body = call(emu, "addLdapConfiguration", hostname=directory.host, port=directory.port)
    # LdapAddConfigurationCmd.execute: ServerApiException(INTERNAL_ERROR, e.toString())
    assert (status, body["errortext"]) == (530, f"{INVALID} Unable to bind to the given LDAP server")
    configure(emu)
    assert call(emu, "addLdapConfiguration", hostname=directory.host, port=directory.port)[0] == 200
    assert call(emu, "addLdapConfiguration", hostname=directory.host, port=directory.port)[1]["errortext"] == \
        f"{INVALID} Duplicate configuration"
    status, body = call(emu, "listLdapConfigurations", hostname=directory.host)
    assert body["count"] == 1 and body["LdapConfiguration"][0]["port"] == directory.port
    # LdapConfigurationDaoImpl.getSearchCriteria: the port only filters when it is above 0
    assert call(emu, "deleteLdapConfiguration", hostname=directory.host)[0] == 200
    assert call(emu, "listLdapConfigurations")[1] == {}
    assert call(emu, "deleteLdapConfiguration")[1]["errortext"] == f"{INVALID} Either id or hostname must be specified"
    status, body = call(emu, "deleteLdapConfiguration", hostname=directory.host, port=directory.port)
    assert (status, body["errortext"]) == (530, f"{INVALID} Cannot find configuration with hostname {directory.host}")


def test_an_unreachable_server_cannot_be_added(emu):
    configure(emu)
    assert call(emu, "addLdapConfiguration", hostname="127.0.0.1", port=1)[1]["errortext"] == \
        f"{INVALID} Unable to bind to the given LDAP server"


def test_link_rules(emu):
    root = call(emu, "listDomains", listall="true")[1]["domain"][0]
    assert root["path"] == "ROOT"
    link = {"domainid": root["id"], "type": "GROUP", "ldapdomain": slapd.GROUP_DN, "accounttype": 0}
    # commons-lang Validate's IllegalArgumentException: ApiServer answers it as PARAM_ERROR
    status, body = call(emu, "linkDomainToLdap", **link)
    assert status == 431 and "unless a basedn" in body["errortext"]
    configure(emu)
    status, body = call(emu, "linkDomainToLdap", **{**link, "accounttype": 1})
    assert status == 431 and "0(normal user) or 2(domain admin)" in body["errortext"]
    status, body = call(emu, "linkDomainToLdap", **{**link, "type": "team"})
    assert status == 431 and "LinkType.TEAM" in body["errortext"]
    assert call(emu, "linkDomainToLdap", **{**link, "domainid": "no-such"})[0] == 431
    status, body = call(emu, "linkDomainToLdap", **link)
    assert status == 200 and body["LinkDomainToLdap"]["accounttype"] == 0
    # GenericDaoBase.persist: the unique key's duplicate is EntityExistsException, a 530
    status, body = call(emu, "linkDomainToLdap", **{**link, "type": "OU"})
    assert (status, body["errortext"]) == (530, "Entity already exists ")
    # not in the current release's contract
    assert call(emu, "unlinkDomainFromLdap", domainid=root["id"])[0] == 432


def test_ldap_settings_are_domain_scoped_others_are_not(emu):
    root = call(emu, "listDomains")[1]["domain"][0]["id"]
    assert call(emu, "updateConfiguration", name="ldap.basedn", value="dc=x", domainid=root)[0] == 200
    assert emu.domain_config[(root, "ldap.basedn")] == "dc=x" and emu.config["ldap.basedn"] is None
    assert call(emu, "updateConfiguration", name="host", value="10.0.0.1", domainid=root)[0] == 431
