"""The management server's boot script, run for real against recording fakes:
order, idempotency, bounded waits, and what never happens (schema deploy over an
existing database, --deploy-as, template seeding, secrets in the log)."""

import json
import os
import shutil
import subprocess
from dataclasses import replace

import pytest

from components.model import consoles
from bootlab import (ANCHOR_KEY, BOOT_BUCKET, CLOUD_PASSWORD, CONSOLE_ELASTIC_IP, MANAGEMENT, MASTER_PASSWORD,
                     MASTER_SECRET, MGMT_SSH_KEY, NEWEST, PREFIX, SECRET_VALUES, SECRETS, index_of, is_apt, is_cmd,
                     is_s3_cp, package_file, publish_anchor, render)

SCRIPT = "management-server.sh"
#: Connector/J's parameters that verify the server (userdata/management-server.sh).
DB_TLS_PARAMS = ("sslMode=VERIFY_IDENTITY&trustCertificateKeyStoreUrl=file:/etc/cloudstack-ec2/rds-truststore.p12"
                 "&trustCertificateKeyStoreType=PKCS12&trustCertificateKeyStorePassword=cloudstack-ec2")


def api_calls(calls):
    return [c["api"] for c in calls if c.get("api")]


def db_properties(machine):
    return machine.file("/etc/cloudstack/management/db.properties").read_text()


def alter_users(machine):
    return [s for s in machine.state()["db"]["statements"] if "ALTER USER" in s]


def first_run(machine):
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output
    return r


def is_put_parameter(key):
    return lambda c: c["cmd"] == "aws" and "put-parameter" in c["args"] and f"{PREFIX}/{key}" in c["args"]


def is_get_parameter(key):
    return lambda c: c["cmd"] == "aws" and "get-parameter" in c["args"] and f"{PREFIX}/{key}" in c["args"]


def test_first_boot_runs_every_phase_in_order(machine):
    r = first_run(machine)
    calls = machine.calls()
    order = [
        # Stage 1 (the launcher): network, AWS CLI, the role script from S3.
        index_of(calls, is_cmd("systemctl", "start", "cloudstack-ec2-overlay.service"), "overlay start"),
        index_of(calls, is_cmd("ping"), "overlay gateway check"),
        index_of(calls, lambda c: c["cmd"] == "curl" and "-I" in c["args"], "internet check"),
        index_of(calls, is_cmd("snap", "install", "aws-cli", "--classic"), "AWS CLI snap"),
        index_of(calls, is_s3_cp, "role script fetched"),
        # Stage 2: management-server.sh.
        index_of(calls, is_cmd("hostnamectl", "set-hostname", "mgmt"), "hostname"),
        index_of(calls, lambda c: c["cmd"] == "aws" and "get-secret-value" in c["args"]
                 and SECRETS.admin in c["args"], "admin secret read"),
        index_of(calls, lambda c: c["cmd"] == "nft" and c["args"][0] == "-f", "firewall loaded"),
        index_of(calls, is_apt("install", "cloudstack-management"), "install"),
        index_of(calls, is_put_parameter("cloudstack-version"), "version published"),
        index_of(calls, is_get_parameter("db-endpoint"), "database endpoint read"),
        index_of(calls, lambda c: c["cmd"] == "mysql" and c["sql"].strip() == "SELECT 1;", "DB wait"),
        index_of(calls, lambda c: c["cmd"] == "mysql" and "CREATE USER IF NOT EXISTS" in c["sql"], "DB user"),
        index_of(calls, lambda c: c["cmd"] == "cloudstack-setup-databases" and "--schema-only" in c["args"],
                 "schema"),
        index_of(calls, is_cmd("mount"), "EFS mount"),
        index_of(calls, is_cmd("cloudstack-setup-management"), "setup-management"),
        index_of(calls, lambda c: c.get("api") == "updateUser", "admin password"),
        index_of(calls, lambda c: c.get("api") == "updateConfiguration", "global settings"),
        index_of(calls, is_cmd("systemctl", "restart", "cloudstack-management.service"), "settings restart"),
        index_of(calls, lambda c: c.get("api") == "registerUserKeys", "API keys"),
        index_of(calls, lambda c: c["cmd"] == "aws" and "put-secret-value" in c["args"], "keys stored"),
        index_of(calls, is_put_parameter("management-ssh-public-key"), "SSH key published"),
    ]
    assert order == sorted(order), order
    # The API keys appear only once the settings restart is over and the API
    # answers again: the registration starts as soon as they do.
    restart = order[-5]
    api_up_again = index_of(calls[restart:], lambda c: c["cmd"] == "curl" and "-w" in c["args"]
                            and "-I" not in c["args"], "API poll after the restart") + restart
    assert restart < api_up_again < order[-3] < order[-2]
    state = machine.state()
    assert state["api"]["restarts"] == 1
    assert state["ssm"][f"{PREFIX}/cloudstack-version"] == NEWEST
    assert_anchor(state, "cloudstack-version")
    # Every apt-get waits for the dpkg lock (apt-daily holds it on a first boot).
    apt = [c for c in calls if c["cmd"] == "apt-get"]
    assert apt and all("DPkg::Lock::Timeout=600" in c["args"] for c in apt)
    assert machine.file("/etc/systemd/networkd.conf.d/60-cloudstack-ec2.conf").read_text() == \
        "[Network]\nManageForeignRoutes=no\n"
    assert not any(c["cmd"] == "systemctl" and "systemd-networkd.service" in c["args"] for c in calls)
    # The world after the first boot.
    assert state["db"]["schema"] is True
    assert json.loads(state["secrets"][SECRETS.api_keys]) == {"apikey": "api-1", "secretkey": "sec-1"}
    assert state["ssm"][f"{PREFIX}/management-ssh-public-key"] == MGMT_SSH_KEY
    assert_anchor(state, "management-ssh-public-key")
    assert state["api"]["admin_password"] == "AdminPw0rdQwe789"
    assert state["api"]["config"] == {"host": "10.100.0.2", "management.network.cidr": "10.100.0.0/16",
                                      "integration.api.port": "0", "control.cidr": "169.254.0.0/17",
                                      "consoleproxy.url.domain": "",
                                      # before the restart: older releases read it at start
                                      "system.vm.public.ip.reservation.mode.strictness": "true",
                                      # read at start: set before the restart; allowed.ips keeps its default
                                      "prometheus.exporter.enable": "true",
                                      "prometheus.exporter.allowed.ips": "127.0.0.1"}
    assert "cloudstack-ec2-overlay.service" in state["units"]["enabled"]
    assert "cloudstack-ec2-boot.service" in state["units"]["enabled"]
    # RDS path: databases, user and grants by us, never --deploy-as.
    sql = "\n".join(state["db"]["statements"])
    for stmt in ("CREATE DATABASE IF NOT EXISTS `cloud`;", "CREATE DATABASE IF NOT EXISTS `cloud_usage`;",
                 "IDENTIFIED WITH caching_sha2_password", "GRANT ALL ON `cloud`.* TO 'cloud'@'%';",
                 "GRANT ALL ON `cloud_usage`.* TO 'cloud'@'%';"):
        assert stmt in sql
    assert not any(a.startswith("--deploy-as") for c in calls for a in c["args"])
    assert not any(c["cmd"] == "cloud-install-sys-tmplt" for c in calls)
    assert "registers the KVM system VM template itself" in r.output


def test_efs_mount_is_persistent_with_awss_options_and_zone_directories(machine):
    first_run(machine)
    machine.rerun(SCRIPT)
    fstab = machine.file("/etc/fstab").read_text().splitlines()
    assert fstab == ["fs-1.efs.example:/ /mnt/cloudstack-efs nfs4 nfsvers=4.1,rsize=1048576,wsize=1048576,hard,"
                     "timeo=600,retrans=2,noresvport,_netdev 0 0"]
    assert machine.file("/mnt/cloudstack-efs/zone1/primary").is_dir()
    assert machine.file("/mnt/cloudstack-efs/zone1/secondary").is_dir()
    assert machine.state()["mounts"] == [str(machine.file("/mnt/cloudstack-efs"))], "mounted once"


def test_second_run_changes_nothing_and_never_seeds(machine):
    first_run(machine)
    before = machine.state()
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    calls = machine.calls()
    assert not any(c["cmd"] == "apt-get" for c in calls), "packages are installed already"
    assert not any(c["cmd"] in ("cloudstack-setup-databases", "cloudstack-setup-management",
                                "cloud-install-sys-tmplt", "mount", "snap") and c["args"][:1] != ["list"]
                   for c in calls)
    assert not any(c["cmd"] == "aws" and ("put-secret-value" in c["args"] or "put-parameter" in c["args"])
                   for c in calls)
    # Bootstrapped: no API login at all (the admin's secret is not readable any more).
    assert api_calls(calls) == []
    assert not any(is_cmd("systemctl", "restart")(c) for c in calls), "nothing restarted (chrony, management)"
    after = machine.state()
    assert after["secrets"] == before["secrets"] and after["api"]["keys_registered"] == 1
    assert "the cloud is bootstrapped" in r.output and "reusing it" in r.output
    # ALTER USER empties MySQL 8.4's caching_sha2_password cache: never while the password works.
    assert alter_users(machine) == []
    # As the cloud user, which changes no user or grant: no statement beyond the first run's.
    assert {c["user"] for c in calls if c["cmd"] == "mysql"} == {"cloud"}
    assert after["db"]["statements"] == before["db"]["statements"]
    # Connector/J verifies the server, in both connection URLs, once each.
    lines = db_properties(machine).splitlines()
    assert "db.usage.url.params=serverTimezone=UTC&" + DB_TLS_PARAMS in lines
    assert db_properties(machine).count("sslMode=") == 2
    assert "allowPublicKeyRetrieval" not in db_properties(machine)


def test_existing_schema_is_reused_never_deployed(machine):
    # A database a management server has run on (cloud.mshost has rows), set up
    # before the marker existed: adopted, never deployed over.
    machine.update(lambda s: s["db"].update(schema=True, schema_complete=True, mshost_rows=1,
                                            databases=["cloud", "cloud_usage"]))
    r = first_run(machine)
    setup = [c for c in machine.calls() if c["cmd"] == "cloudstack-setup-databases"]
    assert len(setup) == 1, "a replaced instance only configures itself for the existing database"
    assert "--schema-only" not in setup[0]["args"]
    assert not any(a.startswith("--deploy-as") for a in setup[0]["args"])
    assert setup[0]["args"][0] == f"cloud:{CLOUD_PASSWORD}@db.example.internal:3306"
    assert "schema 'cloud' already exists" in r.output and "a management server has used it" in r.output
    assert machine.state()["db"]["marker"] is True
    assert not any("DROP DATABASE" in s for s in machine.state()["db"]["statements"])
    assert db_properties(machine).startswith("db.cloud.host=db.example.internal\n")
    assert db_properties(machine).count("&" + DB_TLS_PARAMS + "\n") == 2


def test_unreachable_database_gives_a_bounded_wait_then_a_clear_failure(machine):
    machine.update(lambda s: s["db"].update(reachable=False))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert r.seconds < 20
    assert "waiting for database db.example.internal:3306 to accept connections" in r.output
    assert "did not accept connections within 2 s" in r.output
    assert "ERROR in step 'wait for the database db.example.internal:3306'" in r.output
    calls = machine.calls()
    assert sum(1 for c in calls if c["cmd"] == "mysql") >= 2, "it retried"
    assert not any(c["cmd"].startswith("cloudstack-setup") for c in calls)


def test_missing_secret_stops_before_anything_is_installed(machine):
    machine.update(lambda s: s["secrets"].pop(SECRETS.cloudstack_keys))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert f"secret {SECRETS.cloudstack_keys} has no value after 2 s" in r.output
    assert "ResourceNotFoundException" in r.output
    calls = machine.calls()
    assert not any(c["cmd"] in ("apt-get", "mysql", "mount") or c["cmd"].startswith("cloudstack-")
                   for c in calls)
    # The only thing added before the secrets are read: the AWS CLI that reads them.
    assert [c["args"][1] for c in calls if c["cmd"] == "snap" and c["args"][0] == "install"] == ["aws-cli"]


def test_missing_parameter_is_waited_for_after_the_packages_then_fails(machine):
    machine.update(lambda s: s["ssm"].pop(f"{PREFIX}/db-endpoint"))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert f"waiting for SSM parameter {PREFIX}/db-endpoint" in r.output
    assert f"SSM parameter {PREFIX}/db-endpoint does not exist after 2 s" in r.output
    # RDS takes many minutes: the packages do not wait for it.
    calls = machine.calls()
    installed = index_of(calls, is_apt("install", "cloudstack-management"), "install")
    assert installed < index_of(calls, is_get_parameter("db-endpoint"), "database endpoint read")
    assert "cloudstack-management" in machine.state()["packages"]
    assert not any(c["cmd"] == "mysql" for c in calls)


def test_members_wait_for_the_overlay_gateway_and_the_internet_first(machine):
    machine.update(lambda s: s["network"].update(gateway_silent_pings=1, internet_silent_heads=1))
    r = first_run(machine)
    assert "waiting for overlay gateway 10.100.0.1 to answer ping (attempt 1" in r.output
    assert "waiting for the internet (HTTPS HEAD https://download.cloudstack.org/release.asc)" in r.output
    calls = machine.calls()
    pings = [i for i, c in enumerate(calls) if c["cmd"] == "ping"]
    heads = [i for i, c in enumerate(calls) if c["cmd"] == "curl" and "-I" in c["args"]]
    # The launcher waits (one silent answer each), then the role script checks once more.
    fetch = index_of(calls, is_s3_cp, "role script fetch")
    assert len([i for i in pings if i < fetch]) == 2 and len([i for i in heads if i < fetch]) == 2
    assert len(pings) == 3 and len(heads) == 3
    assert calls[pings[0]]["args"][-1] == "10.100.0.1"
    assert pings[1] < min(heads) < heads[1] < index_of(calls, is_cmd("snap", "install"), "first install")


@pytest.mark.parametrize("silent, message", [
    ("gateway_silent_pings", "the overlay gateway (router) 10.100.0.1 did not answer ping within 2 s"),
    ("internet_silent_heads", "the internet did not answer within 2 s: no HTTPS answer from "
                              "https://download.cloudstack.org/release.asc"),
])
def test_silent_network_is_a_bounded_wait_then_names_what_did_not_answer(machine, silent, message):
    machine.update(lambda s: s["network"].update({silent: 1000}))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert r.seconds < 20
    assert message in r.output
    assert "ERROR in step 'wait for the overlay gateway 10.100.0.1 and the internet'" in r.output
    assert not any(c["cmd"] in ("apt-get", "aws") or is_cmd("snap", "install")(c) for c in machine.calls())


def test_transient_install_failures_are_retried(machine):
    machine.update(lambda s: s["failures"].update({
        "update": ["E: Failed to fetch http://archive.ubuntu.com/ubuntu/dists/noble/InRelease"
                   "  Temporary failure resolving 'archive.ubuntu.com'"],
        "install": ["E: Failed to fetch http://archive.ubuntu.com/ubuntu/pool/main/c/chrony/chrony.deb"
                    "  Connection timed out"],
        "snap-install": ["error: cannot install \"aws-cli\": Post https://api.snapcraft.io/v2/snaps/refresh:"
                         " dial tcp: i/o timeout"]}))
    r = first_run(machine)
    calls = machine.calls()
    assert sum(1 for c in calls if is_cmd("snap", "install", "aws-cli")(c)) == 2
    assert sum(1 for c in calls if is_apt("update")(c)) >= 2
    assert sum(1 for c in calls if is_apt("install", "chrony")(c)) == 2
    assert "apt-get update failed (status 100, attempt 1 of 5); retrying in 1 s" in r.output
    assert "snap install aws-cli failed (status 100, attempt 1 of 5)" in r.output
    assert "chrony" in machine.state()["packages"]


def test_permanent_install_failure_is_reported_at_once(machine):
    r = machine.run_user_data(render(replace(MANAGEMENT, cloudstack_version="4.22.9")))
    assert r.status != 0
    assert "retrying cannot help: E: Version '4.22.9*' for 'cloudstack-management' was not found" in r.output
    assert sum(1 for c in machine.calls() if is_apt("install", "cloudstack-management")(c)) == 1


def test_snapd_seeding_is_a_bounded_wait(machine):
    machine.update(lambda s: s.update({"snap_seed_hangs": True}))
    r = machine.run_user_data(render(MANAGEMENT), env={"CSEC2_WAIT_SNAP_SEED_SECONDS": "1"})
    assert r.status != 0
    assert "snapd did not finish seeding within 1 s" in r.output
    assert not any(is_cmd("snap", "install")(c) for c in machine.calls())


def test_retries_are_bounded(machine):
    machine.update(lambda s: s["failures"].update({"snap-install": ["error: too many requests"] * 5}))
    r = machine.run_user_data(render(MANAGEMENT), env={"CSEC2_RETRY_ATTEMPTS": "2"})
    assert r.status != 0
    assert "snap install aws-cli failed 2 times (last status 100): error: too many requests" in r.output
    assert sum(1 for c in machine.calls() if is_cmd("snap", "install")(c)) == 2


def test_cloud_user_password_is_set_only_when_it_does_not_work(machine):
    # The user exists with another password (the secret was changed): set once.
    machine.update(lambda s: s["db"]["users"].update(cloud="an-older-password"))
    r = first_run(machine)
    assert len(alter_users(machine)) == 1
    assert machine.state()["db"]["users"]["cloud"] == CLOUD_PASSWORD
    assert "cannot log in with the secret's password: setting it" in r.output


def test_older_db_properties_verify_the_server_and_the_server_restarts(machine):
    first_run(machine)
    # As an older boot script left it: no usage params at all, cloud params that fetch the
    # server's RSA key without TLS, and a TLS mode that verifies nothing.
    path = machine.file("/etc/cloudstack/management/db.properties")
    path.write_text("db.cloud.host=db.example.internal\ndb.cloud.port=3306\n"
                    "db.cloud.url.params=serverTimezone=UTC&allowPublicKeyRetrieval=true&sslMode=PREFERRED\n")
    path.chmod(0o640)
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    assert db_properties(machine).splitlines()[2:] == [
        "db.cloud.url.params=serverTimezone=UTC&" + DB_TLS_PARAMS,
        "db.usage.url.params=" + DB_TLS_PARAMS]
    assert path.stat().st_mode & 0o777 == 0o640, "owner and mode are kept"
    restarts = [c for c in machine.calls() if is_cmd("systemctl", "restart", "cloudstack-management.service")(c)]
    assert len(restarts) == 1, "the running server reads db.properties only at start"


def test_pinned_release_is_installed_and_its_version_published_again_after_an_upgrade(machine):
    boot = replace(MANAGEMENT, cloudstack_version="4.22.0")
    assert machine.run_user_data(render(boot)).status == 0
    assert any(is_apt("install")(c) and "cloudstack-management=4.22.0*" in c["args"] for c in machine.calls())
    assert machine.state()["ssm"][f"{PREFIX}/cloudstack-version"] == "4.22.0.0"
    assert copied(machine.state(), "4.22.0.0")

    def upgraded(s):  # by hand, from the repository
        s["versions"]["cloudstack-management"] = "4.22.0.1"
        for p in ("cloudstack-agent", "cloudstack-common"):
            s["repo"][p].append("4.22.0.1")
    machine.update(upgraded)
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    assert machine.state()["ssm"][f"{PREFIX}/cloudstack-version"] == "4.22.0.1"
    assert_anchor(machine.state(), "cloudstack-version")
    assert copied(machine.state(), "4.22.0.1"), "the hosts' copy follows the upgrade"


def copied(state, version):
    """Whether the boot-script bucket holds cloudstack-agent and -common of exactly `version`."""
    objects = state["s3"]["objects"]
    return all(objects.get(f"{BOOT_BUCKET}/packages/{version}/{p}.deb") == package_file(p, version)
               for p in ("cloudstack-agent", "cloudstack-common"))


def test_first_server_keeps_the_hosts_packages_of_its_version_once(machine):
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output
    assert copied(machine.state(), NEWEST)
    downloads = [c["args"] for c in machine.calls() if is_apt("download")(c)]
    assert [d[-2:] for d in downloads] == [["download", f"cloudstack-agent={NEWEST}"],
                                           ["download", f"cloudstack-common={NEWEST}"]]
    machine.clear_calls()
    assert machine.rerun(SCRIPT).status == 0
    assert not any(is_apt("download")(c) for c in machine.calls()), "kept once per version"


def test_a_refused_upload_of_the_hosts_packages_fails_the_boot(machine):
    machine.update(lambda s: s["s3"].update(writable=[]))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert f"cannot upload cloudstack-agent {NEWEST} to s3://{BOOT_BUCKET}/packages/{NEWEST}/" in r.output
    assert "AccessDenied" in r.output


def assert_anchor(state, which):
    """Parameter `which` is a SecureString under the anchor key (what the hosts accept)."""
    assert state["ssm_meta"][f"{PREFIX}/{which}"] == {"Type": "SecureString", "KeyId": ANCHOR_KEY}


@pytest.mark.parametrize("which", ["management-ssh-public-key", "cloudstack-version"])
def test_a_value_someone_else_wrote_is_published_again_under_the_anchor_key(machine, which):
    assert machine.run_user_data(render(MANAGEMENT)).status == 0
    published = machine.state()["ssm"][f"{PREFIX}/{which}"]
    # Someone with ssm:PutParameter overwrote it (the hosts refuse it): the next run
    # publishes this server's value again, even though the text is the same.
    publish_anchor(machine, f"{PREFIX}/{which}", published, type_="String")
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    assert machine.state()["ssm"][f"{PREFIX}/{which}"] == published
    assert_anchor(machine.state(), which)
    # Unchanged since: nothing written.
    machine.clear_calls()
    assert machine.rerun(SCRIPT).status == 0
    assert not any(c["cmd"] == "aws" and "put-parameter" in c["args"] for c in machine.calls())


def test_the_anchors_are_not_published_without_the_anchor_keys_encrypt_permission(machine):
    # The anchor key's policy gives kms:Encrypt to the management server's role: without
    # it PutParameter of the SecureString fails (the fake's rule), and so does the boot.
    machine.update(lambda s: s["kms"].update(encrypt=[]))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert "not authorized to perform: kms:Encrypt" in r.output
    assert f"{PREFIX}/cloudstack-version" not in machine.state()["ssm"]


def test_existing_api_keys_and_admin_password_are_kept(machine):
    def seed(s):
        s["secrets"][SECRETS.api_keys] = json.dumps({"apikey": "kept", "secretkey": "kept-too"})
        s["api"]["admin_password"] = "AdminPw0rdQwe789"
    machine.update(seed)
    first_run(machine)
    calls = api_calls(machine.calls())
    assert "registerUserKeys" not in calls and "updateUser" not in calls
    assert json.loads(machine.state()["secrets"][SECRETS.api_keys])["apikey"] == "kept"


def is_console_rows_write(c) -> bool:
    return c["cmd"] == "mysql" and c["sql"].lstrip().startswith("INSERT INTO `cloud`.`configuration`")


def console_rows(machine) -> dict:
    return {name: row["value"] for name, row in machine.state()["db"]["configuration"].items()}


def test_console_urls_name_the_console_address_before_the_registration_starts(machine):
    # ConsoleProxyManagerImpl.configure reads consoleproxy.static.publicIp/.port at start:
    # the boot writes both rows (no Config entry: updateConfiguration would refuse them),
    # then the server restarts, all before the API keys (what the registration waits for).
    r = first_run(machine)
    calls = machine.calls()
    write = index_of(calls, is_console_rows_write, "console rows written")
    restart = index_of(calls, is_cmd("systemctl", "restart", "cloudstack-management.service"), "settings restart")
    keys = index_of(calls, lambda c: c.get("api") == "registerUserKeys", "API keys")
    assert write < restart < keys
    # The names the registration checks (components/model/consoles.py), the page's port.
    assert console_rows(machine) == {consoles.STATIC_ADDRESS_SETTING: CONSOLE_ELASTIC_IP,
                                     consoles.STATIC_PORT_SETTING: str(consoles.CONSOLE_PAGE_PORT)}
    row = machine.state()["db"]["configuration"]["consoleproxy.static.publicIp"]
    assert row["instance"] == "DEFAULT" and row["category"] != "Hidden"
    assert machine.state()["api"]["restarts"] == 1
    # With the master user, as the boot's other SQL; never through updateConfiguration.
    assert calls[write]["user"] == "admin"
    assert not any(c.get("api") == "updateConfiguration" and "consoleproxy" in " ".join(c["args"]) for c in calls)
    # consoleproxy.url.domain is left as CloudStack has it (a domain needs a certificate).
    assert machine.state()["api"]["config"][consoles.URL_DOMAIN_SETTING] == ""
    assert "consoleproxy.static.publicIp and .port set to 203.0.113.80 80 (were: NULL NULL)" in r.output
    log = machine.file("/var/log/cloudstack-ec2-boot.log").read_text()
    assert log.index("set to 203.0.113.80 80") < log.index("restarting the management server") < \
        log.index("API keys of")


def test_the_api_lists_the_console_rows_as_a_real_server_would(machine):
    first_run(machine)
    # What the registration's check sees: listConfigurations (name LIKE, not Hidden).
    env = machine.env()
    login = subprocess.run(["curl", "--data-urlencode", "command=login", "--data-urlencode", "username=admin",
                            "--data-urlencode", "password=AdminPw0rdQwe789", "http://127.0.0.1:8080/client/api"],
                           env=env, capture_output=True, text=True)
    assert "sess-1" in login.stdout, login
    answer = subprocess.run(["curl", "--data-urlencode", "command=listConfigurations", "--data-urlencode",
                             "name=consoleproxy.static", "--data-urlencode", "sessionkey=sess-1",
                             "http://127.0.0.1:8080/client/api"], env=env, capture_output=True, text=True)
    items = json.loads(answer.stdout)["listconfigurationsresponse"]["configuration"]
    assert {i["name"]: i["value"] for i in items} == {"consoleproxy.static.publicIp": CONSOLE_ELASTIC_IP,
                                                     "consoleproxy.static.port": "80"}


def test_a_second_boot_with_the_same_console_address_writes_nothing_and_restarts_nothing(machine):
    first_run(machine)
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    assert not any(is_console_rows_write(c) for c in machine.calls())
    assert any(c["cmd"] == "mysql" and "consoleproxy.static.publicIp" in c["sql"] for c in machine.calls()), \
        "the rows were not read"
    assert machine.state()["api"]["restarts"] == 1
    assert "consoleproxy.static.publicIp = '203.0.113.80', consoleproxy.static.port = '80'" in r.output


def test_a_changed_console_address_is_written_over_the_old_row_and_restarts(machine):
    first_run(machine)
    # Another console Elastic IP (a replaced stack's boot.env), a row in another case.
    def older(s):
        rows = s["db"]["configuration"]
        rows["consoleproxy.static.publicip"] = {**rows.pop("consoleproxy.static.publicIp"), "value": "198.51.100.9"}
    machine.update(older)
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    assert sum(is_console_rows_write(c) for c in machine.calls()) == 1
    assert console_rows(machine) == {"consoleproxy.static.publicip": CONSOLE_ELASTIC_IP,
                                     "consoleproxy.static.port": "80"}
    assert machine.state()["api"]["restarts"] == 2
    assert "(were: 198.51.100.9 80)" in r.output


def test_the_fake_database_refuses_a_configuration_row_without_its_instance(machine, tmp_path):
    # What makes the boot's INSERT name `instance`: NOT NULL without a default
    # (create-schema.sql), and CloudStack's sql_mode is strict.
    machine.update(lambda s: s["db"].update(schema=True))
    cnf = tmp_path / "master.cnf"
    cnf.write_text(f'[client]\nuser=admin\npassword="{MASTER_PASSWORD}"\n')
    sql = ("INSERT INTO `cloud`.`configuration` (category, name, value) VALUES ('Advanced', 'consoleproxy.static.port',"
           " '80') ON DUPLICATE KEY UPDATE value = VALUES(value);")
    p = subprocess.run(["mysql", f"--defaults-extra-file={cnf}"], input=sql, env=machine.env(), capture_output=True,
                       text=True)
    assert p.returncode == 1 and "Field 'instance' doesn't have a default value" in p.stderr
    assert machine.state()["db"]["configuration"] == {}


def test_console_address_left_alone_without_one(machine):
    machine.update(lambda s: s["api"]["config"].update({"consoleproxy.url.domain": "console.example.com"}))
    r = machine.run_user_data(render(replace(MANAGEMENT, console_address="")))
    assert r.status == 0, r.output
    assert machine.state()["api"]["config"]["consoleproxy.url.domain"] == "console.example.com"
    assert not any(c["cmd"] == "mysql" and "consoleproxy" in c["sql"] for c in machine.calls())
    assert machine.state()["db"]["configuration"] == {}


def test_integration_port_is_switched_off(machine):
    machine.update(lambda s: s["api"]["config"].update({"integration.api.port": "8096"}))
    first_run(machine)
    assert machine.state()["api"]["config"]["integration.api.port"] == "0"


def test_log_has_timestamped_steps_and_no_secret_values(machine):
    r = first_run(machine)
    log = machine.file("/var/log/cloudstack-ec2-boot.log").read_text()
    assert "==> step: database: CloudStack schema" in log
    assert all(line[:4].isdigit() and line[10] == "T" for line in log.splitlines()
               if "cloudstack-ec2[" in line)
    for value in SECRET_VALUES:
        assert value not in log and value not in r.output
    # nor in any file the user data wrote outside the CloudStack configuration
    for path in machine.file("/etc/cloudstack-ec2").iterdir():
        assert not any(v in path.read_text() for v in SECRET_VALUES)
    assert not list(machine.file("/run").iterdir()), "the private secret directory is removed on exit"


def test_failure_of_a_command_names_the_step(machine):
    machine.update(lambda s: s["units"]["failing"].append("cloudstack-ec2-overlay.service"))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert "ERROR in step 'overlay network unit'" in r.output
    assert "boot FAILED" in r.output
    assert not any(c["cmd"] == "aws" for c in machine.calls())


def test_firewall_admits_each_cloudstack_port_only_from_its_address_classes(machine):
    first_run(machine)
    rules = machine.file("/etc/cloudstack-ec2/host-firewall.nft").read_text()
    management, hosts, system = "10.100.0.2-10.100.0.9", "10.100.0.10-10.100.63.253", "10.100.64.1-10.100.64.250"
    lines = [line.strip() for line in rules.splitlines()]
    # 8096 never, from anywhere, before anything is accepted (loopback included).
    assert lines.index("tcp dport 8096 counter drop") < lines.index('iifname "lo" accept')
    assert f"meta nfproto ipv4 tcp dport 9090 ip saddr != {{ {management} }} counter drop" in lines
    # 8250: hosts and system VMs accepted here (the system range would otherwise
    # fall to the last rule), everyone else dropped.
    assert lines.index(f"meta nfproto ipv4 tcp dport 8250 ip saddr {{ {hosts}, {system} }} accept") + 1 == \
        lines.index("tcp dport 8250 counter drop")
    assert (f"meta nfproto ipv4 tcp dport 8080 ip saddr 10.100.0.0/16 ip saddr != {{ 10.100.0.1, {management} }}"
            " counter drop") in lines
    assert "meta nfproto ipv4 ip saddr 10.100.0.0/16 ip saddr != 10.100.0.0/18 counter drop" in lines
    assert "cloudstack-ec2-host-firewall.service" in machine.state()["units"]["enabled"]
    assert "flush ruleset" not in rules


def test_management_server_does_not_start_at_a_later_boot_when_the_firewall_fails_to_load(machine):
    first_run(machine)

    def reboot_with_a_broken_firewall(s):
        s["units"]["active"] = []
        s["units"]["failing"].append("cloudstack-ec2-host-firewall.service")

    machine.update(reboot_with_a_broken_firewall)
    r = machine.rerun(SCRIPT)
    assert r.status != 0
    assert "A dependency job for cloudstack-management.service failed" in r.output
    assert "cloudstack-management.service" not in machine.state()["units"]["active"]


# --- CloudStack's secrets: generated on the first management server, never replaced --------

GENERATED = (SECRETS.db_cloud, SECRETS.cloudstack_keys, SECRETS.admin)


def is_put_secret(secret_id):
    return lambda c: c["cmd"] == "aws" and "put-secret-value" in c["args"] and secret_id in c["args"]


def new_stack(s):
    # The stack creates these secrets without a value (components/resources/management.py).
    for secret_id in GENERATED:
        s["secrets"][secret_id] = None


def test_first_management_server_generates_each_secret_value_once(machine):
    machine.update(new_stack)
    r = first_run(machine)
    state = machine.state()
    cloud = json.loads(state["secrets"][SECRETS.db_cloud])
    keys = json.loads(state["secrets"][SECRETS.cloudstack_keys])
    admin = json.loads(state["secrets"][SECRETS.admin])
    assert cloud["username"] == "cloud" and admin["username"] == "admin"
    values = [cloud["password"], keys["management_key"], keys["database_key"], admin["password"]]
    assert [len(v) for v in values] == [32, 32, 32, 24]
    assert all(v.isalnum() and v.isascii() for v in values) and len(set(values)) == 4
    # Used as generated: the cloud user, the admin login, the encryption keys.
    assert state["db"]["users"]["cloud"] == cloud["password"]
    assert state["api"]["admin_password"] == admin["password"]
    setup = next(c for c in machine.calls() if c["cmd"] == "cloudstack-setup-databases" and "-m" in c["args"])
    assert (setup["args"][setup["args"].index("-m") + 1], setup["args"][setup["args"].index("-k") + 1]) == \
        (keys["management_key"], keys["database_key"])
    # Stored once each, under the one version id a first value has.
    puts = [c for c in machine.calls() if c["cmd"] == "aws" and "put-secret-value" in c["args"]]
    first_values = [c for c in puts if "--client-request-token" in c["args"]]
    assert sorted(c["args"][c["args"].index("--secret-id") + 1] for c in first_values) == sorted(GENERATED)
    # Never in the log or the output; on no command line but the one the keys are
    # cloudstack-setup-databases' arguments of (-m, -k: its only way to take them).
    log = machine.file("/var/log/cloudstack-ec2-boot.log").read_text()
    for value in values:
        assert value not in log and value not in r.output
        assert not any(value in a for c in machine.calls() if c["cmd"] != "cloudstack-setup-databases"
                       for a in c["args"])
    # A re-run (or a replaced instance) reads them and stores nothing.
    machine.clear_calls()
    assert machine.rerun(SCRIPT).status == 0
    assert not any(is_put_secret(s)(c) for c in machine.calls() for s in GENERATED)
    assert json.loads(machine.state()["secrets"][SECRETS.admin]) == admin


def test_a_throttled_first_value_is_stored_on_a_later_attempt(machine):
    def throttled(s):
        new_stack(s)
        s["secret_put_throttles"] = 2
    machine.update(throttled)
    r = first_run(machine)
    assert "no first value yet (attempt 1 of 5)" in r.output and "ThrottlingException" in r.output
    assert all(machine.state()["secrets"][s] is not None for s in GENERATED)


def test_existing_secret_values_are_never_replaced(machine):
    before = machine.state()["secrets"]
    first_run(machine)
    assert not any(is_put_secret(s)(c) for c in machine.calls() for s in GENERATED)
    assert {s: machine.state()["secrets"][s] for s in GENERATED} == {s: before[s] for s in GENERATED}


def test_a_first_value_another_server_stored_meanwhile_is_used_not_replaced(machine):
    # Two first boots at once: the other server stores the first value of the admin
    # secret right after this one found it empty.
    theirs = json.dumps({"username": "admin", "password": "TheirAdminPw0rd1"})

    def race(s):
        new_stack(s)
        s["concurrent_first_values"] = {SECRETS.admin: theirs}
    machine.update(race)
    r = first_run(machine)
    assert "secret " + SECRETS.admin + " got its first value from another management server" in r.output
    state = machine.state()
    assert state["secrets"][SECRETS.admin] == theirs
    assert state["api"]["admin_password"] == "TheirAdminPw0rd1"


def test_master_credentials_come_from_the_rds_managed_secret_named_in_ssm(machine):
    # RDS's generated passwords may hold any printable ASCII but '/', '"' and '@'.
    awkward = "Ma$ter\\Pw`0rd#'x!"

    def rds_password(s):
        s["secrets"][MASTER_SECRET] = json.dumps({"username": "admin", "password": awkward})
        s["db"]["master_password"] = awkward
    machine.update(rds_password)
    r = first_run(machine)
    calls = machine.calls()
    read = index_of(calls, lambda c: c["cmd"] == "aws" and "get-secret-value" in c["args"]
                    and MASTER_SECRET in c["args"], "master secret read")
    assert index_of(calls, is_get_parameter("db-master-secret"), "its ARN read") < read
    assert awkward not in r.output and awkward not in machine.file("/var/log/cloudstack-ec2-boot.log").read_text()


def test_master_secret_parameter_must_name_a_secret(machine):
    machine.update(lambda s: s["ssm"].update({f"{PREFIX}/db-master-secret": "MasterPw0rdXyz123"}))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert f"SSM parameter {PREFIX}/db-master-secret is 'MasterPw0rdXyz123'; expected the ARN" in r.output


# --- no window with CloudStack's default admin password ------------------------------------

def test_api_is_closed_beyond_loopback_until_the_admin_password_is_set(machine):
    first_run(machine)
    calls = [c for c in machine.calls() if c.get("api")]
    changed = index_of(calls, lambda c: c["api"] == "updateUser", "password change")
    # Every call up to the change and the login that checks it: the router cannot reach 8080.
    assert all(c["firewall"]["router_to_api"] == "drop" for c in calls[:changed + 2])
    assert calls[changed + 1]["api"] == "login"
    # Opened once the password is the secret's: the settings and the API keys come after.
    assert all(c["firewall"]["router_to_api"] == "accept" for c in calls[changed + 2:])
    assert machine.state()["firewall"]["router_to_api"] == "accept"
    rules = machine.file("/etc/cloudstack-ec2/host-firewall.nft").read_text()
    assert 'iifname != "lo" tcp dport 8080 counter drop' not in rules


def test_a_later_run_keeps_the_api_open_when_a_step_fails(machine):
    """Once the password is the secret's, a reboot's run must not close the UI/API of a
    running cloud again: a step failing later would leave it closed."""
    first_run(machine)
    machine.update(lambda s: s["ssm"].pop(f"{PREFIX}/efs-dns"))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0 and "boot FAILED" in r.output
    assert machine.state()["firewall"]["router_to_api"] == "accept"
    assert 'iifname != "lo" tcp dport 8080 counter drop' not in \
        machine.file("/etc/cloudstack-ec2/host-firewall.nft").read_text()


@pytest.mark.parametrize("breakage, message", [
    (lambda s: s["api"].update(admin_password="SetByHand1"), "cannot log in as 'admin' with the secret's password"),
    (lambda s: s["api"].update(refuse_update_user=True), "updateUser did not change the admin password"),
])
def test_a_failed_password_change_stops_the_boot_with_the_api_closed(machine, breakage, message):
    machine.update(breakage)
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0 and message in r.output and "boot FAILED" in r.output
    state = machine.state()
    assert state["firewall"]["router_to_api"] == "drop"
    assert "registerUserKeys" not in api_calls(machine.calls())
    # The table loaded at the next boot is the closed one.
    assert 'iifname != "lo" tcp dport 8080 counter drop' in \
        machine.file("/etc/cloudstack-ec2/host-firewall.nft").read_text()


#: A client the router forwards (its DNAT keeps the client's address): it arrives on the
#: overlay device from outside the overlay, in a frame from the router's cloudbr0 (whose MAC
#: overlay-network.sh derives from 10.100.0.1). Judged by the fake nft at every load of the table.
FORWARDED_CLIENT = {"table": "cloudstack_ec2_management", "iif": "cloudbr0", "saddr": "203.0.113.9", "dport": 8080,
                    "ether": "0a:00:0a:64:00:01"}
#: The same address forged by a NIC on cloudbr0 that is no infrastructure node's: a virtual
#: router's public NIC (whose MAC has 06 set in its first byte: NetUtils.createSequenceBasedMacAddress
#: in apache/cloudstack).
FORGED_CLIENT = {**FORWARDED_CLIENT, "ether": "1e:00:5b:00:00:07"}


def probe_forwarded_client(machine) -> None:
    machine.update(lambda s: s["firewall_probes"].update(forwarded_client=FORWARDED_CLIENT,
                                                          forged_client=FORGED_CLIENT))


def test_the_routers_forward_reaches_the_ui_while_the_router_has_it(machine):
    probe_forwarded_client(machine)
    first_run(machine)
    assert machine.state()["firewall"]["forwarded_client"] == "accept"


def test_an_address_from_outside_the_overlay_forged_on_cloudbr0_does_not_pass_for_the_routers_forward(machine):
    """Only the router's frames (an infrastructure MAC: the KVM hosts drop VM frames claiming
    one) carry a source outside the overlay to 8080: a VM forging such a source would pass
    around the router's security group (adminCidrs)."""
    probe_forwarded_client(machine)
    first_run(machine)
    firewall = machine.state()["firewall"]
    assert (firewall["forwarded_client"], firewall["forged_client"]) == ("accept", "drop")
    rules = machine.file("/etc/cloudstack-ec2/host-firewall.nft").read_text()
    assert ('meta nfproto ipv4 iifname "cloudbr0" ip saddr != 10.100.0.0/16 tcp dport 8080'
            " ether saddr & ff:ff:00:00:00:00 != 0a:00:00:00:00:00 counter drop") in rules


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("unshare"),
                    reason="needs root, nft and unshare to load the rules in a scratch namespace")
def test_the_kernel_takes_the_source_mac_match_in_the_inet_input_hook(machine):
    """nftables loads the rendered table (in a scratch network namespace) with the MAC match,
    and matches the Ethernet header only on Ethernet devices (its implied `meta iiftype`)."""
    first_run(machine)
    path = machine.file("/etc/cloudstack-ec2/host-firewall.nft")
    r = subprocess.run(["unshare", "--net", "sh", "-c", f"nft -f {path} && nft --debug=netlink list ruleset"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert ('iifname "cloudbr0" ip saddr != 10.100.0.0/16 tcp dport 8080'
            " ether saddr & ff:ff:00:00:00:00 != 0a:00:00:00:00:00 counter packets 0 bytes 0 drop") in r.stdout, \
        r.stdout
    assert "[ meta load iiftype => reg 1 ]" in r.stdout, r.stdout


def test_behind_the_load_balancer_the_router_forward_is_dropped_from_the_next_run_on(machine):
    """Pulumi writes "none" to ui-forward when the UI/API moves behind the load balancer: the
    router stops forwarding, and a server's next run (a reboot, or the boot unit started by
    hand) drops whatever would still come that way, e.g. from a router whose boot script
    predates the parameter. The router itself and the other servers keep 8080."""
    probe_forwarded_client(machine)
    first_run(machine)
    machine.update(lambda s: s["ssm"].update({f"{PREFIX}/ui-forward": "none"}))
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    firewall = machine.state()["firewall"]
    assert firewall["forwarded_client"] == "drop"
    assert firewall["router_to_api"] == "accept"
    rules = machine.file("/etc/cloudstack-ec2/host-firewall.nft").read_text()
    assert 'meta nfproto ipv4 iifname "cloudbr0" ip saddr != 10.100.0.0/16 tcp dport 8080 counter drop' in rules
    # And back when the load balancer goes.
    machine.update(lambda s: s["ssm"].update({f"{PREFIX}/ui-forward": "tcp:8080:10.100.0.2:8080"}))
    assert machine.rerun(SCRIPT).status == 0
    assert machine.state()["firewall"]["forwarded_client"] == "accept"


def kernel(machine) -> dict:
    return machine.state()["kernel_net"]


def test_connections_from_the_underlay_are_answered_through_it_before_cloudstack_is_installed(machine):
    """Whatever subnets a load balancer has, now or added later: what comes in on the
    underlay device is answered by the VPC router there (tests/lab/test_front_end_lab.py
    proves it with packets), and nothing else changes route."""
    r = first_run(machine)
    # As EC2's link-local services: the VPC router on the underlay device, from the underlay address.
    assert kernel(machine)["tables"]["3778"] == ["default via 10.0.0.1 dev ens5 src 10.0.0.28"]
    assert kernel(machine)["rules"] == ["fwmark 0xec2 table 3778 priority 3778"]
    assert "default via 10.100.0.1 dev cloudbr0 src 10.100.0.2 metric 0" in kernel(machine)["routes"]
    marks = machine.file("/etc/cloudstack-ec2/underlay-replies.nft").read_text()
    assert 'iifname "ens5" ip daddr 10.0.0.28 meta l4proto tcp ct state new ct mark set 0xec2' in marks
    assert "type route hook output" in marks and "ct mark 0xec2 meta mark set ct mark" in marks
    calls = machine.calls()
    loaded = index_of(calls, is_cmd("nft", "-f", str(machine.file("/etc/cloudstack-ec2/underlay-replies.nft"))),
                      "marks loaded")
    assert loaded < index_of(calls, is_apt("install", "cloudstack-management"), "packages")
    assert r.status == 0


def test_a_rerun_replaces_the_rule_and_route_instead_of_adding_more(machine):
    first_run(machine)
    before = kernel(machine)
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    assert kernel(machine) == before


def test_without_the_overlay_networks_underlay_route_the_boot_stops_naming_it(machine):
    machine.update(lambda s: s.update(kernel_net={"addresses": {"ens5": "10.0.0.28/24"},
                                               "routes": ["default via 10.100.0.1 dev cloudbr0"]}))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert "no route to 169.254.169.254 through the underlay" in r.output
    assert not any(is_apt("install", "cloudstack-management")(c) for c in machine.calls())
