"""A stack with `ldap`: the bind password goes into a Secrets Manager secret of the stack (a
Pulumi secret in the state), and the registration gets only that secret's ARN and version;
the password is in no other input, no user data and no output."""

from __future__ import annotations

import json

import pytest
from conftest import Deployed, run_program

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
