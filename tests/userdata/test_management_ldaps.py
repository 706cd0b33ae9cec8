"""LDAPS: every management server builds the directory's truststore at boot from the CA secret,
with a password the first server generated into its own secret (the same for every server)."""

from __future__ import annotations

import json
from dataclasses import replace

from bootlab import ARN, MANAGEMENT, SECRETS, render

from components.model.ldap import TRUSTSTORE_PATH
from test_management_database import fake_pem

LDAP_CA = ARN.format("ldap-ca")
LDAP_TRUSTSTORE = ARN.format("ldap-truststore")
DIRECTORY_CAS = ["SBDEMO1 Root CA", "SBDEMO1 Issuing CA"]
LDAPS = replace(MANAGEMENT, secrets=replace(SECRETS, ldap_ca=LDAP_CA, ldap_truststore=LDAP_TRUSTSTORE))


def with_ldaps(machine, truststore_password=None):
    machine.update(lambda s: s["secrets"].update({LDAP_CA: fake_pem(DIRECTORY_CAS),
                                                  LDAP_TRUSTSTORE: truststore_password}))


def test_the_first_boot_generates_the_password_and_builds_the_truststore(machine):
    with_ldaps(machine)
    r = machine.run_user_data(render(LDAPS))
    assert r.status == 0, r.output
    password = machine.state()["secrets"][LDAP_TRUSTSTORE]
    # a plain word, exactly the password (no JSON, no newline): the registration sets it as is
    assert password.isalnum() and len(password) == 32
    store = json.loads(machine.file(TRUSTSTORE_PATH).read_text())
    assert store == {"password": password, "certificates": {"ldap-ca-1": DIRECTORY_CAS[0],
                                                            "ldap-ca-2": DIRECTORY_CAS[1]}}
    assert (machine.file(TRUSTSTORE_PATH).stat().st_mode & 0o777) == 0o640
    # readable by the management server's user (cloud), nobody else
    assert [c["args"][0] for c in machine.calls() if c["cmd"] == "chown" and c["args"][-1].endswith(TRUSTSTORE_PATH)] \
        == ["root:cloud"]
    keytool = [c for c in machine.calls() if c["cmd"] == "keytool" and "ldap-ca-1" in c["args"]]
    # the password never on a command line, nor in the log
    assert keytool and all(password not in " ".join(c["args"]) for c in machine.calls())
    assert password not in r.output


def test_another_server_uses_the_password_already_there(machine):
    with_ldaps(machine, truststore_password="KeptPassw0rdOfTheFirstServer")
    r = machine.run_user_data(render(LDAPS))
    assert r.status == 0, r.output
    assert machine.state()["secrets"][LDAP_TRUSTSTORE] == "KeptPassw0rdOfTheFirstServer"
    assert json.loads(machine.file(TRUSTSTORE_PATH).read_text())["password"] == "KeptPassw0rdOfTheFirstServer"


def test_a_ca_secret_without_a_certificate_stops_the_boot(machine):
    with_ldaps(machine)
    machine.update(lambda s: s["secrets"].update({LDAP_CA: "not a certificate"}))
    r = machine.run_user_data(render(LDAPS))
    assert r.status != 0 and "holds no PEM certificate" in r.output


def test_without_ldaps_no_truststore(machine):
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output
    assert not machine.file(TRUSTSTORE_PATH).exists()
    assert not [c for c in machine.calls() if c["cmd"] == "keytool" and "ldap-ca-1" in c["args"]]


def _restarts(machine) -> int:
    return sum(1 for c in machine.calls()
               if c["cmd"] == "systemctl" and c["args"][:2] == ["restart", "cloudstack-management.service"])


def test_a_new_ca_at_a_later_boot_restarts_the_management_server_an_unchanged_one_does_not(machine):
    with_ldaps(machine)
    assert machine.run_user_data(render(LDAPS)).status == 0
    machine.clear_calls()
    r = machine.rerun("management-server.sh")
    assert r.status == 0, r.output
    assert _restarts(machine) == 0
    # LdapContextFactory.enableSSL only sets javax.net.ssl.trustStore; the JVM reads the store
    # when it first makes its default SSLContext and keeps it: a new CA needs a new JVM
    machine.update(lambda s: s["secrets"].update({LDAP_CA: fake_pem(["SBDEMO1 Root CA 2026"])}))
    machine.clear_calls()
    r = machine.rerun("management-server.sh")
    assert r.status == 0, r.output
    assert json.loads(machine.file(TRUSTSTORE_PATH).read_text())["certificates"] == {
        "ldap-ca-1": "SBDEMO1 Root CA 2026"}
    assert _restarts(machine) == 1
