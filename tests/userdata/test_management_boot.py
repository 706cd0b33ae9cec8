"""The management server's boot script, run for real against recording fakes:
order, idempotency, bounded waits, and what never happens (schema deploy over an
existing database, --deploy-as, template seeding, secrets in the log)."""

import json

from bootlab import (CLOUD_PASSWORD, MANAGEMENT, MGMT_SSH_KEY, PREFIX, SECRET_VALUES, SECRETS, index_of, is_cmd,
                     render)

SCRIPT = "management-server.sh"


def api_calls(calls):
    return [c["api"] for c in calls if c.get("api")]


def first_run(machine):
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output
    return r


def test_first_boot_runs_every_phase_in_order(machine):
    r = first_run(machine)
    calls = machine.calls()
    order = [
        index_of(calls, is_cmd("hostnamectl", "set-hostname", "mgmt"), "hostname"),
        index_of(calls, is_cmd("systemctl", "start", "cloudstack-ec2-overlay.service"), "overlay start"),
        index_of(calls, is_cmd("snap", "install", "aws-cli", "--classic"), "AWS CLI snap"),
        index_of(calls, lambda c: c["cmd"] == "aws" and "get-secret-value" in c["args"]
                 and SECRETS.admin in c["args"], "admin secret read"),
        index_of(calls, lambda c: c["cmd"] == "apt-get" and "cloudstack-management" in c["args"], "install"),
        index_of(calls, lambda c: c["cmd"] == "mysql" and c["sql"].strip() == "SELECT 1;", "DB wait"),
        index_of(calls, lambda c: c["cmd"] == "mysql" and "CREATE USER IF NOT EXISTS" in c["sql"], "DB user"),
        index_of(calls, lambda c: c["cmd"] == "cloudstack-setup-databases" and "--schema-only" in c["args"],
                 "schema"),
        index_of(calls, is_cmd("mount"), "EFS mount"),
        index_of(calls, is_cmd("cloudstack-setup-management"), "setup-management"),
        index_of(calls, lambda c: c.get("api") == "updateUser", "admin password"),
        index_of(calls, lambda c: c.get("api") == "registerUserKeys", "API keys"),
        index_of(calls, lambda c: c["cmd"] == "aws" and "put-secret-value" in c["args"], "keys stored"),
        index_of(calls, lambda c: c["cmd"] == "aws" and "put-parameter" in c["args"], "SSH key published"),
    ]
    assert order == sorted(order), order
    state = machine.state()
    # The world after the first boot.
    assert state["db"]["schema"] is True
    assert json.loads(state["secrets"][SECRETS.api_keys]) == {"apikey": "api-1", "secretkey": "sec-1"}
    assert state["ssm"][f"{PREFIX}/management-ssh-public-key"] == MGMT_SSH_KEY
    assert state["api"]["admin_password"] == "AdminPw0rdQwe789"
    assert state["api"]["config"] == {"host": "10.100.0.2", "management.network.cidr": "10.100.0.0/16",
                                      "integration.api.port": "0"}
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
    assert set(api_calls(calls)) <= {"login", "listConfigurations"}
    assert not any(is_cmd("systemctl", "restart")(c) for c in calls), "nothing restarted (chrony, management)"
    after = machine.state()
    assert after["secrets"] == before["secrets"] and after["api"]["keys_registered"] == 1
    assert "already exists" in r.output and "keeping them" in r.output


def test_existing_schema_is_reused_never_deployed(machine):
    machine.update(lambda s: s["db"].update(schema=True))
    r = first_run(machine)
    setup = [c for c in machine.calls() if c["cmd"] == "cloudstack-setup-databases"]
    assert len(setup) == 1, "a replaced instance only configures itself for the existing database"
    assert "--schema-only" not in setup[0]["args"]
    assert not any(a.startswith("--deploy-as") for a in setup[0]["args"])
    assert setup[0]["args"][0] == f"cloud:{CLOUD_PASSWORD}@db.example.internal:3306"
    assert "schema 'cloud' already exists" in r.output
    assert machine.file("/etc/cloudstack/management/db.properties").read_text().startswith(
        "db.cloud.host=db.example.internal\n")


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
    machine.update(lambda s: s["secrets"].update({SECRETS.cloudstack_keys: None}))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert f"secret {SECRETS.cloudstack_keys} has no value after 2 s" in r.output
    assert "ResourceNotFoundException" in r.output
    calls = machine.calls()
    assert not any(c["cmd"] in ("apt-get", "mysql", "mount") or c["cmd"].startswith("cloudstack-")
                   for c in calls)
    # The only thing added before the secrets are read: the AWS CLI that reads them.
    assert [c["args"][1] for c in calls if c["cmd"] == "snap" and c["args"][0] == "install"] == ["aws-cli"]


def test_missing_parameter_is_waited_for_then_fails(machine):
    machine.update(lambda s: s["ssm"].pop(f"{PREFIX}/db-endpoint"))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0
    assert f"waiting for SSM parameter {PREFIX}/db-endpoint" in r.output
    assert f"SSM parameter {PREFIX}/db-endpoint does not exist after 2 s" in r.output


def test_existing_api_keys_and_admin_password_are_kept(machine):
    def seed(s):
        s["secrets"][SECRETS.api_keys] = json.dumps({"apikey": "kept", "secretkey": "kept-too"})
        s["api"]["admin_password"] = "AdminPw0rdQwe789"
    machine.update(seed)
    first_run(machine)
    calls = api_calls(machine.calls())
    assert "registerUserKeys" not in calls and "updateUser" not in calls
    assert json.loads(machine.state()["secrets"][SECRETS.api_keys])["apikey"] == "kept"


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
