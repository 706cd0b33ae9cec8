"""A stack with `ldap`: the bind password goes into a Secrets Manager secret of the stack (a
Pulumi secret in the state), and the registration gets only that secret's ARN and version;
the password is in no other input, no user data and no output."""

from __future__ import annotations

import json

import pytest
from tests.unit.conftest import Deployed, run_program

from components.model.settings import SettingsError

PASSWORD = "Bind-Passw0rd-of-the-test"
LDAP = {"provider": "microsoftad", "servers": [{"host": "dc1.sbdemo1.local", "port": 389}],
        "baseDn": "DC=sbdemo1,DC=local", "bindPrincipal": "CN=cloudstack-ldap,CN=Users,DC=sbdemo1,DC=local",
        "bindPassword": PASSWORD, "userObject": "user", "usernameAttribute": "sAMAccountName",
        "groupPrincipal": "CN=CloudStack,CN=Users,DC=sbdemo1,DC=local",
        "links": [{"domain": "ROOT", "type": "GROUP", "name": "CN=CloudStack,CN=Users,DC=sbdemo1,DC=local"}]}


@pytest.fixture(scope="module")
def with_ldap() -> Deployed:
    return run_program({"ldap": json.dumps(LDAP)}, secret_keys=["ldap"])


def test_the_password_is_only_in_its_secret(with_ldap):
    d = with_ldap
    [version] = d.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    assert d.is_secret(version.inputs["secretString"]) and d.unwrap_secret(version.inputs["secretString"]) == PASSWORD
    assert d.secret_inputs() == [f"{version.name}.secretString"]
    elsewhere = [r.name for r in d.registrations if r is not version
                 and any(PASSWORD in s for s in d.strings(dict(r.inputs)))]
    assert elsewhere == []
    assert not any(PASSWORD in s for s in d.strings(d.run.outputs))


def test_the_registration_applies_the_directory(with_ldap):
    d = with_ldap
    by_name = {r.name: r for r in d.registrations}
    [secret] = [r for r in d.of_type("aws:secretsmanager/secret:Secret") if r.name == "ldap-bind"]
    assert "ldap-bind-" in secret.inputs["namePrefix"]
    bind = by_name["registration-setting-ldap-bind-password"]
    assert bind.inputs["name"] == "ldap.bind.password" and bind.inputs["secret_arn"]
    assert by_name["registration-setting-ldap-basedn"].inputs["value"] == "DC=sbdemo1,DC=local"
    assert by_name["registration-ldap-server-dc1.sbdemo1.local-389"].inputs["port"] == 389
    link = by_name["registration-ldap-link-ROOT"].inputs
    assert (link["type"], link["accounttype"]) == ("GROUP", 0)


def test_a_bind_password_in_plain_text_is_refused_before_anything_is_created():
    with pytest.raises(SettingsError, match="ldap.bindPassword"):
        run_program({"ldap": json.dumps(LDAP)})


def test_without_ldap_nothing_of_it(dev):
    assert not [r for r in dev.registrations if "ldap" in r.name]


CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ==\n-----END CERTIFICATE-----"


@pytest.fixture(scope="module")
def with_ldaps() -> Deployed:
    ldaps = {**LDAP, "ldaps": True, "caCertificate": CA, "servers": [{"host": "dc1.sbdemo1.local"}]}
    return run_program({"ldap": json.dumps(ldaps)}, secret_keys=["ldap"])


def test_ldaps_every_management_server_reads_the_ca_and_owns_the_truststore_password(with_ldaps):
    d = with_ldaps
    versions = {r.name: r for r in d.of_type("aws:secretsmanager/secretVersion:SecretVersion")}
    assert d.unwrap_secret(versions["ldap-ca"].inputs["secretString"]) == CA + "\n"
    assert sorted(d.secret_inputs()) == ["ldap-bind.secretString", "ldap-ca.secretString"]
    [mgmt] = [r for r in d.of_type("aws:ec2/instance:Instance") if r.name == "management"]
    env = d.boot_env(mgmt)
    assert env["CSEC2_LDAP_TRUSTSTORE"] == "/etc/cloudstack-ec2/ldap-truststore.p12"
    assert env["CSEC2_SECRET_LDAP_CA"] and env["CSEC2_SECRET_LDAP_TRUSTSTORE"]
    assert CA.splitlines()[1] not in d.boot_script(mgmt)
    by_name = {r.name: r for r in d.registrations}
    assert by_name["registration-setting-ldap-truststore"].inputs["value"] == env["CSEC2_LDAP_TRUSTSTORE"]
    assert by_name["registration-setting-ldap-truststore-password"].inputs["secret_arn"] == \
        env["CSEC2_SECRET_LDAP_TRUSTSTORE"]
    assert by_name["registration-ldap-server-dc1.sbdemo1.local-636"].inputs["port"] == 636


def test_without_ldaps_the_management_server_has_no_ldap_secret(with_ldap):
    [mgmt] = [r for r in with_ldap.of_type("aws:ec2/instance:Instance") if r.name == "management"]
    assert "CSEC2_SECRET_LDAP_CA" not in with_ldap.boot_env(mgmt)


def test_ldaps_grants_the_management_server_exactly_the_ca_and_the_truststore_password(with_ldaps, dev):
    from test_components_security import SECRET, grants

    def management_grants(d):
        return grants(d.policy_document("management"))

    ca = with_ldaps.get(SECRET, "ldap-ca").state["arn"]
    truststore = with_ldaps.get(SECRET, "management-ldap-truststore").state["arn"]
    bind = with_ldaps.get(SECRET, "ldap-bind").state["arn"]
    added = management_grants(with_ldaps) - management_grants(dev)
    assert added == {("secretsmanager:GetSecretValue", ca), ("secretsmanager:DescribeSecret", ca),
                     ("secretsmanager:GetSecretValue", truststore), ("secretsmanager:DescribeSecret", truststore),
                     # its first value is generated by the management server
                     ("secretsmanager:PutSecretValue", truststore)}
    # the bind password is the registration's alone
    assert not any(arn == bind for _, arn in management_grants(with_ldaps))
