"""The management server's database step against cloudstack-setup-databases as each
supported release behaves (tests/userdata/fakes/fake.py names the sources): the
schema step on 4.21+, a half-deployed schema, secrets the tool prints, a rotated
database password, and every connection verifying the server (TLS)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from dataclasses import replace

import pytest

from bootlab import (CLOUD_PASSWORD, DB_CA, DB_HOST, MANAGEMENT, MANAGEMENT_KEY, MASTER_PASSWORD, PREFIX, RDS_BUNDLE,
                     SECRET_VALUES, SECRETS, is_cmd, render)

SCRIPT = "management-server.sh"
TOOL_OUTPUT = "/var/lib/cloudstack-ec2/tool-output/cloudstack-setup-databases.log"
RELEASES = {"4.19": "4.19.1.3", "4.20": "4.20.2.0", "4.21": "4.21.0.0", "4.22": "4.22.1.0"}


def on_release(machine, release: str):
    """The repository offers exactly RELEASES[release]; returns the boot to render."""
    version = RELEASES[release]
    machine.update(lambda s: s["repo"].update({p: [version] for p in
                                               ("cloudstack-management", "cloudstack-common", "cloudstack-agent")}))
    return replace(MANAGEMENT, cloudstack_version=release)


def setup_calls(machine):
    return [c for c in machine.calls() if c["cmd"] == "cloudstack-setup-databases"]


def schema_calls(machine):
    return [c for c in setup_calls(machine) if "--schema-only" in c["args"]]


def fake_encrypted(value: str, key: str) -> str:
    # The fake's stand-in for jasypt (fakes/fake.py: encrypted).
    return hashlib.sha256(f"{key}/{value}".encode()).hexdigest()[:24]


def db_password_line(machine) -> str:
    lines = machine.file("/etc/cloudstack/management/db.properties").read_text().splitlines()
    return next(line for line in lines if line.startswith("db.cloud.password="))


def fake_pem(names) -> str:
    # The fake world's certificates (fakes/fake.py: pem): the base64 of the CA's name.
    import base64
    return "".join(f"-----BEGIN CERTIFICATE-----\n{base64.b64encode(n.encode()).decode()}\n"
                   "-----END CERTIFICATE-----\n" for n in names)


def fake_pem_names(text: str) -> list[str]:
    import base64
    import re
    return [base64.b64decode(b).decode() for b in
            re.findall(r"-----BEGIN CERTIFICATE-----\n(.*?)\n-----END CERTIFICATE-----", text, re.S)]


def run_tool(machine, *args):
    """The fake tool on its own, as the boot script's PATH has it."""
    return subprocess.run([str(machine.bin / "cloudstack-setup-databases"), *args], env=machine.env(),
                          capture_output=True, text=True, timeout=30)


# --- the fake is as strict as the real tool -------------------------------------------------


@pytest.mark.parametrize("release", ["4.19", "4.20"])
def test_fake_tool_before_4_21_refuses_force_recreate(machine, release):
    machine.update(lambda s: s["versions"].update({"cloudstack-management": RELEASES[release]}))
    assert "--force-recreate" not in run_tool(machine, "--help").stdout
    refused = run_tool(machine, "cloud:pw@db:3306", "--schema-only", "--force-recreate")
    assert refused.returncode == 2 and "no such option: --force-recreate" in refused.stderr


def test_fake_tool_on_4_21_aborts_on_existing_databases_without_force_recreate(machine):
    machine.update(lambda s: (s["versions"].update({"cloudstack-management": RELEASES["4.21"]}),
                              s["db"].update(databases=["cloud", "cloud_usage"])))
    assert "--force-recreate" in run_tool(machine, "--help").stdout
    aborted = run_tool(machine, "cloud:pw@db:3306", "--schema-only")
    assert aborted.returncode == 1 and "--force-recreate" in aborted.stderr
    assert machine.state()["db"]["schema"] is False
    assert run_tool(machine, "cloud:pw@db:3306", "--schema-only", "--force-recreate").returncode == 0


# --- item: the schema step on every supported release ---------------------------------------


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_schema_is_deployed_on_every_release(machine, release):
    r = machine.run_user_data(render(on_release(machine, release)))
    assert r.status == 0, r.output
    calls = schema_calls(machine)
    assert len(calls) == 1, setup_calls(machine)
    # Only the releases whose tool has it get the option (4.19/4.20 reject it).
    assert ("--force-recreate" in calls[0]["args"]) == (release >= "4.21"), calls[0]["args"]
    state = machine.state()["db"]
    assert state["schema_complete"] and state["marker"]
    if release != "4.21":
        return
    # The option is passed on the schema-absent path only: a second run deploys nothing.
    machine.clear_calls()
    again = machine.rerun(SCRIPT)
    assert again.status == 0, again.output
    assert setup_calls(machine) == []


# --- item: a half-deployed schema is not a deployed schema ---------------------------------


def test_half_deployed_schema_is_deployed_again_on_the_next_run(machine):
    machine.update(lambda s: s["db"].update(schema_fails=True))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    db = machine.state()["db"]
    assert db["schema"] and not db["marker"], "cloud.version exists, the setup did not finish"
    assert not any(is_cmd("cloudstack-setup-management")(c) for c in machine.calls())
    machine.update(lambda s: s["db"].update(schema_fails=False))
    machine.clear_calls()
    again = machine.rerun(SCRIPT)
    assert again.status == 0, again.output
    assert "half deployed" in again.output
    assert len(schema_calls(machine)) == 1, "deployed again, not taken for deployed"
    db = machine.state()["db"]
    assert db["schema_complete"] and db["marker"]
    assert any("DROP DATABASE IF EXISTS `cloud`" in s for s in db["statements"])


def test_a_database_a_management_server_used_is_never_dropped(machine):
    # cloud.version without the marker, but cloud.mshost has rows: in use.
    machine.update(lambda s: s["db"].update(schema=True, schema_complete=True, mshost_rows=2,
                                            databases=["cloud", "cloud_usage"]))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output
    assert schema_calls(machine) == []
    assert not any("DROP DATABASE" in s for s in machine.state()["db"]["statements"])


# --- item: no secret in logs ---------------------------------------------------------------


def test_tool_printing_its_password_leaves_it_in_a_root_only_file_only(machine):
    machine.update(lambda s: s["db"].update(schema_fails=True))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    log = machine.file("/var/log/cloudstack-ec2-boot.log").read_text()
    for value in SECRET_VALUES:
        assert value not in r.output, "console output"
        assert value not in log, "boot log"
    # The failure is still explained, with the secret masked ...
    assert "Row size too large" in r.output and "'passwd': '***'" in r.output
    assert "cloudstack-setup-databases could not create the schema" in r.output
    # ... and the whole output is kept where only root can read it.
    kept = machine.file(TOOL_OUTPUT)
    assert CLOUD_PASSWORD in kept.read_text()
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700


# --- item: rotated database password -------------------------------------------------------


def rotate(machine, new_password: str, user_too: bool = False):
    def change(s):
        # As PutSecretValue does: the value it replaces becomes AWSPREVIOUS.
        s.setdefault("secret_previous", {})[SECRETS.db_cloud] = s["secrets"][SECRETS.db_cloud]
        s["secrets"][SECRETS.db_cloud] = json.dumps({"username": "cloud", "password": new_password})
        if user_too:
            s["db"]["users"]["cloud"] = new_password
    machine.update(change)


@pytest.mark.parametrize("user_too", [False, True], ids=["secret-only", "secret-and-user"])
def test_rotated_password_rewrites_db_properties_and_restarts(machine, user_too):
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output
    assert db_password_line(machine) == f"db.cloud.password=ENC({fake_encrypted(CLOUD_PASSWORD, MANAGEMENT_KEY)})"
    restarts = machine.state()["api"]["restarts"]
    new = "RotatedPw0rd777"
    rotate(machine, new, user_too)
    machine.clear_calls()
    again = machine.rerun(SCRIPT)
    assert again.status == 0, again.output
    assert machine.state()["db"]["users"]["cloud"] == new
    configure = [c for c in setup_calls(machine) if "--schema-only" not in c["args"]]
    assert len(configure) == 1 and configure[0]["args"][0].startswith(f"cloud:{new}@")
    assert db_password_line(machine) == f"db.cloud.password=ENC({fake_encrypted(new, MANAGEMENT_KEY)})"
    assert machine.state()["api"]["restarts"] == restarts + 1, "the running server reads db.properties at start"
    assert new not in again.output
    record = machine.file("/var/lib/cloudstack-ec2/db-password.sha256")
    assert new not in record.read_text() and stat.S_IMODE(record.stat().st_mode) == 0o600
    # And then nothing more.
    machine.clear_calls()
    assert machine.rerun(SCRIPT).status == 0
    assert setup_calls(machine) == []


# --- item: characters the tool cannot carry ------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("management_key", "Mgmt$HOMEkey"), ("database_key", "Db`id`Key"), ("management_key", 'Mg"mt'),
    ("database_key", "Db\\Key"), ("management_key", "Mgmt Key"),
])
def test_secret_the_tool_cannot_carry_is_refused_before_anything_is_installed(machine, field, value):
    keys = {"management_key": MANAGEMENT_KEY, "database_key": "DbKeyYYY222", field: value}
    machine.update(lambda s: s["secrets"].update({SECRETS.cloudstack_keys: json.dumps(keys)}))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert f"secret {SECRETS.cloudstack_keys}: '{field}' must not contain" in r.output
    assert value not in r.output
    assert not any(c["cmd"] in ("apt-get", "mysql") or c["cmd"].startswith("cloudstack-") for c in machine.calls())


def test_cloud_password_with_a_dollar_is_refused(machine):
    machine.update(lambda s: s["secrets"].update(
        {SECRETS.db_cloud: json.dumps({"username": "cloud", "password": "Cloud$Pw0rd"})}))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert f"secret {SECRETS.db_cloud}: 'password' must not contain '$'" in r.output


# --- item: EC2's link-local services never become a system VM's control address -----------


def test_control_cidr_is_narrowed_before_the_registration_can_create_a_pod(machine):
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output
    assert machine.state()["api"]["config"]["control.cidr"] == "169.254.0.0/17"
    calls = machine.calls()
    changed = next(i for i, c in enumerate(calls) if c.get("api") == "updateConfiguration")
    keys = next(i for i, c in enumerate(calls) if c.get("api") == "registerUserKeys")
    assert changed < keys, "the registration (which needs the keys) creates the pod after this"
    # A control.cidr that holds none of them is left alone.
    machine.update(lambda s: s["api"]["config"].update({"control.cidr": "169.254.240.0/20"}))
    assert machine.rerun(SCRIPT).status == 0
    assert machine.state()["api"]["config"]["control.cidr"] == "169.254.240.0/20"


def test_existing_pods_get_the_services_reserved_and_a_holder_reported(machine):
    machine.update(lambda s: s["db"].update(link_local=[
        {"pod": 1, "ip": "169.254.169.254", "nic": None, "reservation": None, "taken": False},
        {"pod": 1, "ip": "169.254.169.123", "nic": None, "reservation": None, "taken": False},
        {"pod": 1, "ip": "169.254.169.253", "nic": 42, "reservation": "r-1", "taken": True},
    ]))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output
    rows = machine.state()["db"]["link_local"]
    assert [row["reservation"] for row in rows] == ["cloudstack-ec2", "cloudstack-ec2", "r-1"], \
        "free rows reserved; a system VM's address is not taken from it"
    assert "WARNING: system VMs hold EC2 link-local addresses (destroy them)" in r.output
    assert "pod 1 NIC 42 169.254.169.253" in r.output


# --- item: every database connection verifies the server ------------------------------------

TRUSTSTORE = "/etc/cloudstack-ec2/rds-truststore.p12"
BUNDLE = "/etc/cloudstack-ec2/rds-ca-bundle.pem"


def mysql_as(machine, tmp_path, *lines):
    """The fake mysql client with an option file of `lines` (user admin, the master password)."""
    cnf = tmp_path / "client.cnf"
    cnf.write_text("\n".join(["[client]", f"host={DB_HOST}", "user=admin", f'password="{MASTER_PASSWORD}"', *lines])
                   + "\n")
    return subprocess.run(["mysql", f"--defaults-extra-file={cnf}"], input="SELECT 1;", env=machine.env(),
                          capture_output=True, text=True, timeout=30)


def test_the_fake_database_and_clients_keep_tls_rules(machine, tmp_path):
    # require_secure_transport ON: no connection without TLS (error 3159, RDS User Guide).
    refused = mysql_as(machine, tmp_path, "ssl-mode=DISABLED")
    assert refused.returncode == 1 and "--require_secure_transport=ON" in refused.stderr
    # Verifying needs the CA; a bundle without the server's CA, or another name, fails (--ssl-mode).
    assert "CA certificate is required" in mysql_as(machine, tmp_path, "ssl-mode=VERIFY_IDENTITY").stderr
    machine.file("/other.pem").write_text(fake_pem(["Some Other CA"]))
    assert "certificate verify failed" in mysql_as(machine, tmp_path, "ssl-mode=VERIFY_CA", "ssl-ca=/other.pem").stderr
    machine.file("/rds.pem").write_text(fake_pem([DB_CA]))
    wrong_name = mysql_as(machine, tmp_path, "ssl-mode=VERIFY_IDENTITY", "ssl-ca=/rds.pem",
                          "host=10.0.0.9")
    assert "SSL certificate validation failure" in wrong_name.stderr
    assert mysql_as(machine, tmp_path, "ssl-mode=VERIFY_IDENTITY", "ssl-ca=/rds.pem").returncode == 0
    # A man in the middle: TLS that verifies nothing hands him the password.
    machine.update(lambda s: s["db"].update(intercepted=True))
    assert mysql_as(machine, tmp_path, "ssl-mode=REQUIRED").returncode == 0
    assert machine.state()["db"]["captured"] == ["admin"]
    assert mysql_as(machine, tmp_path, "ssl-mode=VERIFY_IDENTITY", "ssl-ca=/rds.pem").returncode == 1


def test_every_mysql_client_and_the_tool_verify_the_server(machine):
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output
    modes = {c.get("ssl-mode") for c in machine.calls() if c["cmd"] == "mysql"}
    assert modes == {"VERIFY_IDENTITY"}, "the master's and the cloud user's option files"
    # The global option file: the mysql that cloudstack-setup-databases runs reads it.
    assert machine.file("/etc/mysql/conf.d/cloudstack-ec2-tls.cnf").read_text() == \
        f"[client]\nssl-mode=VERIFY_IDENTITY\nssl-ca={BUNDLE}\n"
    assert fake_pem_names(machine.file(BUNDLE).read_text()) == RDS_BUNDLE
    assert machine.state()["db"]["captured"] == []


def test_the_management_server_verifies_the_server_without_public_key_retrieval(machine):
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output
    props = dict(line.split("=", 1) for line in machine.file("/etc/cloudstack/management/db.properties")
                 .read_text().splitlines() if "=" in line)
    for key in ("db.cloud.url.params", "db.usage.url.params"):
        params = dict(p.split("=", 1) for p in props[key].split("&"))
        assert params["sslMode"] == "VERIFY_IDENTITY"
        assert params["trustCertificateKeyStoreUrl"] == f"file:{TRUSTSTORE}"
        assert params["trustCertificateKeyStoreType"] == "PKCS12"
        assert "allowPublicKeyRetrieval" not in params
    # The JVM-wide truststore of db.cloud.useSSL=true is not used.
    assert props["db.cloud.useSSL"] == "false"
    store = json.loads(machine.file(TRUSTSTORE).read_text())
    assert sorted(store["certificates"].values()) == sorted(RDS_BUNDLE)
    assert stat.S_IMODE(machine.file(TRUSTSTORE).stat().st_mode) == 0o644, "the management server runs as 'cloud'"
    # A man in the middle appears later: the management server does not hand him its password.
    machine.update(lambda s: s["db"].update(intercepted=True))
    restart = subprocess.run(["systemctl", "restart", "cloudstack-management.service"], env=machine.env())
    assert restart.returncode == 0
    state = machine.state()
    assert state["api"]["up"] is False and "PKIX path building failed" in state["api"]["database_error"]
    assert state["db"]["captured"] == []


def test_the_boot_gives_a_man_in_the_middle_no_password(machine):
    machine.update(lambda s: s["db"].update(intercepted=True))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert "did not accept connections" in r.output and "certificate verify failed" in r.output
    assert machine.state()["db"]["captured"] == []
    assert not any(c["cmd"].startswith("cloudstack-setup") for c in machine.calls())


def test_an_endpoint_given_as_an_address_is_refused(machine):
    machine.update(lambda s: s["ssm"].update({f"{PREFIX}/db-endpoint": "10.0.2.15:3306"}))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert "expected the RDS endpoint's name, which its certificate names" in r.output
    assert not any(c["cmd"] == "mysql" for c in machine.calls())


def test_bundle_download_failure_stops_a_first_boot_and_keeps_an_earlier_bundle(machine):
    machine.update(lambda s: s["rds_ca_bundle"].update(reachable=False))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0 and "could not download the RDS certificate bundle" in r.output
    assert not any(c["cmd"] == "mysql" for c in machine.calls())
    machine.update(lambda s: s["rds_ca_bundle"].update(reachable=True))
    assert machine.rerun(SCRIPT).status == 0
    machine.update(lambda s: s["rds_ca_bundle"].update(reachable=False))
    again = machine.rerun(SCRIPT)
    assert again.status == 0, again.output
    assert "keeping the bundle of an earlier boot" in again.output
