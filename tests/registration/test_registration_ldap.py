"""The company directory through the registration: the emulator, whose addLdapConfiguration
binds to a real OpenLDAP server (emulator/slapd.py) as CloudStack's does, and the bind
password from Secrets Manager (moto). Idempotent, updated, removed; the password in no state,
trace or log."""

from __future__ import annotations

import dataclasses
import json
import logging

import boto3
import pytest
from registration_engine import Engine
from registration_specs import FAST, REGION, make_spec

from components.model import catalog
from components.model.settings import parse_settings
from components.registration.client import RegistrationError
from components.registration.spec import LdapSpec
from emulator import slapd
from emulator.server import DEFAULT_CONFIG

LDAP_CALLS = ("updateConfiguration", "resetConfiguration", "addLdapConfiguration", "deleteLdapConfiguration",
              "linkDomainToLdap", "unlinkDomainFromLdap")


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    found, proc = slapd.start(tmp_path_factory.mktemp("slapd"))
    yield found
    slapd.stop(proc)


def ldap_spec(directory, **fields) -> LdapSpec:
    raw = {"servers": [{"host": directory.host, "port": directory.port}], "baseDn": slapd.BASE_DN,
           "bindPrincipal": slapd.BIND_DN, "bindPassword": "(in Secrets Manager)",
           "groupPrincipal": slapd.GROUP_DN,
           "links": [{"domain": "ROOT", "type": "GROUP", "name": slapd.GROUP_DN, "accountType": "user"}], **fields}
    raw = {k: v for k, v in raw.items() if v is not None}
    settings = parse_settings({"adminCidrs": ["203.0.113.0/24"], "ldap": json.dumps(raw)}, catalog.instance_facts,
                              secret_keys={"ldap"})
    return LdapSpec.of(settings.ldap)


@pytest.fixture
def bind_secret(api_secret):
    """The stack's ldap-bind secret with the directory's bind password; returns a setter of new versions."""
    client = boto3.client("secretsmanager", region_name=REGION)
    arn = client.create_secret(Name="cloudstack-ec2/test/ldap-bind-x", SecretString=slapd.BIND_PASSWORD)["ARN"]

    def put(value: str) -> tuple[str, str]:
        return arn, client.put_secret_value(SecretId=arn, SecretString=value)["VersionId"]

    return put


def engine_for(emulator, api_secret, secret: tuple[str, str]) -> Engine:
    engine = Engine(emulator.url, api_secret, REGION)
    engine.deferred.update(ldap_bind_secret=secret[0], ldap_bind_version=secret[1])
    return engine


def ldap_calls(emulator) -> list[tuple[str, str]]:
    return [(r["command"], r["params"].get("name") or r["params"].get("hostname") or r["params"].get("domainid", ""))
            for r in emulator.accepted_calls() if r["command"] in LDAP_CALLS
            and (r["command"] != "updateConfiguration" or r["params"]["name"].startswith("ldap."))]


def test_one_up_configures_the_directory_and_a_second_changes_nothing(emulator, api_secret, bind_secret, directory,
                                                                     tmp_path, monkeypatch, caplog):
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("CLOUDSTACK_API_TRACE", str(trace))
    caplog.set_level(logging.DEBUG, logger="cloudstack_ec2.registration")
    engine = engine_for(emulator, api_secret, bind_secret(slapd.BIND_PASSWORD))
    spec = dataclasses.replace(make_spec(1, timeouts=FAST), ldap=ldap_spec(directory))
    engine.up(spec)

    c = emulator.config
    assert (c["ldap.basedn"], c["ldap.bind.principal"], c["ldap.search.group.principle"]) == \
        (slapd.BASE_DN, slapd.BIND_DN, slapd.GROUP_DN)
    assert c["ldap.bind.password"] == slapd.BIND_PASSWORD
    assert [(r["hostname"], r["port"]) for r in emulator.ldap_configurations] == [(directory.host, directory.port)]
    root = next(iter(emulator.domains))
    assert emulator.ldap_links[root] == {"domainid": root, "type": "GROUP", "ldapdomain": slapd.GROUP_DN,
                                         "name": slapd.GROUP_DN, "accounttype": 0}
    # the password: in CloudStack only; not in the state, the trace or the log
    assert slapd.BIND_PASSWORD not in json.dumps(engine.state)
    assert slapd.BIND_PASSWORD not in trace.read_text() and "ldap.bind.password" in trace.read_text()
    assert slapd.BIND_PASSWORD not in caplog.text

    # a refresh sees no drift: the Secure settings (the bind principal) come back encrypted, and
    # are not compared
    assert {n: r for n, r in engine.refresh().items() if "ldap" in n and r != "same"} == {}
    assert emulator._config_item("ldap.bind.principal")["value"] != slapd.BIND_DN

    before = len(emulator.requests)
    engine.up(spec)
    assert ldap_calls(emulator)   # the first `up` made them
    assert not [r for r in emulator.requests[before:] if r["command"] in LDAP_CALLS]


def test_changed_removed_and_rotated_values(emulator, api_secret, bind_secret, directory):
    engine = engine_for(emulator, api_secret, bind_secret(slapd.BIND_PASSWORD))
    base = make_spec(1, timeouts=FAST)
    engine.up(dataclasses.replace(base, ldap=ldap_spec(directory)))
    start = len(ldap_calls(emulator))

    # a changed value is updated; a removed one is reset to CloudStack's default (NULL)
    engine.up(dataclasses.replace(base, ldap=ldap_spec(directory, usernameAttribute="cn", groupPrincipal=None)))
    assert sorted(ldap_calls(emulator)[start:]) == [("resetConfiguration", "ldap.search.group.principle"),
                                                    ("updateConfiguration", "ldap.username.attribute")]
    assert emulator.config["ldap.search.group.principle"] is None
    assert emulator.config["ldap.username.attribute"] == "cn"

    # a new version of the password is applied, read from Secrets Manager
    start = len(ldap_calls(emulator))
    engine.deferred.update(zip(("ldap_bind_secret", "ldap_bind_version"), bind_secret("rotated-Passw0rd")))
    engine.up(dataclasses.replace(base, ldap=ldap_spec(directory, usernameAttribute="cn", groupPrincipal=None)))
    assert ldap_calls(emulator)[start:] == [("updateConfiguration", "ldap.bind.password")]
    assert emulator.config["ldap.bind.password"] == "rotated-Passw0rd"


def test_removing_ldap_removes_the_configuration(emulator, api_secret, bind_secret, directory, caplog):
    engine = engine_for(emulator, api_secret, bind_secret(slapd.BIND_PASSWORD))
    base = make_spec(1, timeouts=FAST)
    engine.up(dataclasses.replace(base, ldap=ldap_spec(directory)))
    caplog.set_level(logging.WARNING)
    engine.up(base)
    assert emulator.ldap_configurations == []
    assert {n: v for n, v in emulator.config.items() if n.startswith("ldap.")} == \
        {n: v for n, v in DEFAULT_CONFIG.items() if n.startswith("ldap.")}
    assert not [n for n in engine.state if "ldap" in n]
    # the current release has no unlinkDomainFromLdap: the link stays, and the log says how to remove it
    assert "no unlinkDomainFromLdap" in caplog.text and "cloud.ldap_trust_map" in caplog.text


def test_a_wrong_bind_password_fails_with_what_to_check(emulator, api_secret, bind_secret, directory):
    engine = engine_for(emulator, api_secret, bind_secret("not-the-bind-password"))
    with pytest.raises(RegistrationError) as err:
        engine.up(dataclasses.replace(make_spec(1, timeouts=FAST), ldap=ldap_spec(directory)))
    text = str(err.value)
    assert "Unable to bind to the given LDAP server" in text and "ldap.bindPassword" in text
    assert f"{directory.host}:{directory.port}" in text and "not-the-bind-password" not in text
    assert emulator.ldap_configurations == []


def test_a_link_to_a_missing_domain_names_it(emulator, api_secret, bind_secret, directory):
    engine = engine_for(emulator, api_secret, bind_secret(slapd.BIND_PASSWORD))
    spec = dataclasses.replace(make_spec(1, timeouts=FAST), ldap=ldap_spec(directory, links=[
        {"domain": "ROOT/sales", "type": "OU", "name": slapd.STAFF_OU}]))
    with pytest.raises(RegistrationError, match="no domain 'ROOT/sales'"):
        engine.up(spec)


def test_ldaps_sets_the_truststore_before_any_server_is_added(directory):
    from components.registration.plan import Deferred, plan_registration

    spec = dataclasses.replace(make_spec(1, timeouts=FAST), ldap=ldap_spec(
        directory, ldaps=True, caCertificate="-----BEGIN CERTIFICATE-----\nQQ==\n-----END CERTIFICATE-----"))
    plan = {p.name: p for p in plan_registration(spec)}
    store, password = plan["setting-ldap-truststore"], plan["setting-ldap-truststore-password"]
    assert store.props["value"] == "/etc/cloudstack-ec2/ldap-truststore.p12"
    assert (password.kind, password.props["secret_arn"]) == ("secret_setting", Deferred("ldap_truststore_secret"))
    server = plan[f"ldap-server-{directory.host}-{directory.port}"]
    # addLdapConfiguration binds at once, over LDAPS when both truststore settings are there
    assert {"setting-ldap-truststore", "setting-ldap-truststore-password", "setting-ldap-bind-password",
            "setting-ldap-basedn"} <= server.refs()


def test_a_truststore_password_not_generated_yet_says_to_replace_the_management_server(aws):
    from components.registration.directory import read_secret

    client = boto3.client("secretsmanager", region_name=REGION)
    arn = client.create_secret(Name="cloudstack-ec2/test/ldap-truststore-x")["ARN"]   # no value: no server made one
    with pytest.raises(RegistrationError, match="has no value.*renewInstances\\[0\\]. management.*pulumi config rm renewInstances"):
        read_secret({"name": "ldap.truststore.password", "secret_arn": arn, "secret_version": "", "region": REGION})


def test_a_changed_link_of_a_linked_domain_says_how_to_remove_the_old_one(emulator, api_secret, bind_secret,
                                                                          directory):
    engine = engine_for(emulator, api_secret, bind_secret(slapd.BIND_PASSWORD))
    base = make_spec(1, timeouts=FAST)
    engine.up(dataclasses.replace(base, ldap=ldap_spec(directory)))
    # the link is replaced: unlinkDomainFromLdap is not in this release, so the old link stays and
    # linkDomainToLdap answers the unique key's duplicate (530 "Entity already exists ")
    with pytest.raises(RegistrationError) as err:
        engine.up(dataclasses.replace(base, ldap=ldap_spec(directory, links=[
            {"domain": "ROOT", "type": "OU", "name": slapd.STAFF_OU}])))
    text = str(err.value)
    assert "domain ROOT is linked already" in text and "DELETE FROM cloud.ldap_trust_map" in text
