"""Least privilege over time: the management server needs the RDS master secret and the
admin login only while it bootstraps the cloud; it then marks the cloud bootstrapped and
deletes its bootstrap policies, and every later boot (a reboot, a replaced server on the
existing database) works as the `cloud` user without them."""

import json

from bootlab import (ADMIN_PASSWORD, MANAGEMENT, MANAGEMENT_ROLE, MASTER_SECRET, NEWEST, PREFIX, SECRET_VALUES,
                     SECRETS, index_of, publish_for_hosts, render)

SCRIPT = "management-server.sh"
MARKER = f"{PREFIX}/bootstrap/done"
BOOTSTRAP_POLICIES = ["cloudstack-ec2-bootstrap", "cloudstack-ec2-bootstrap-db-master"]


def first_run(machine):
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output
    return r


def secret_reads(calls):
    return [c["args"][c["args"].index("--secret-id") + 1] for c in calls
            if c["cmd"] == "aws" and "get-secret-value" in c["args"]]


def is_delete(policy):
    return lambda c: c["cmd"] == "aws" and "delete-role-policy" in c["args"] and policy in c["args"]


def test_the_first_boot_marks_the_cloud_bootstrapped_then_deletes_its_bootstrap_policies(machine):
    first_run(machine)
    calls = machine.calls()
    keys = index_of(calls, lambda c: c.get("api") == "registerUserKeys", "API keys created")
    marker = index_of(calls, lambda c: c["cmd"] == "aws" and "put-parameter" in c["args"] and MARKER in c["args"],
                      "marker written")
    deletes = [index_of(calls, is_delete(p), f"{p} deleted") for p in BOOTSTRAP_POLICIES]
    # The marker once everything that needs the grants is done, before they go.
    assert keys < marker < min(deletes)
    assert all(c["args"][c["args"].index("--role-name") + 1] == MANAGEMENT_ROLE
               for c in calls if "delete-role-policy" in c["args"])
    state = machine.state()
    assert state["iam"]["policies"] == []
    assert MARKER in state["ssm"]


def test_a_later_boot_needs_neither_the_master_nor_the_admin_secret(machine):
    first_run(machine)
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    calls = machine.calls()
    # Only the two secrets every boot needs (the fake refuses the others now, as IAM would).
    assert set(secret_reads(calls)) == {SECRETS.db_cloud, SECRETS.cloudstack_keys}
    assert "AccessDenied" not in r.output
    # Every statement as the cloud user; no login to the API as the admin.
    assert {c["user"] for c in calls if c["cmd"] == "mysql"} == {"cloud"}
    assert not [c for c in calls if c.get("api") == "login"]
    assert not any("delete-role-policy" in c["args"] for c in calls if c["cmd"] == "aws")
    assert machine.state()["firewall"]["router_to_api"] == "accept"


def bootstrapped_cloud(state):
    """What a replaced management server finds: the database, the marker, the settings and
    the passwords the first server set, its bootstrap policies gone."""
    state["db"].update(schema=True, schema_complete=True, marker=True, mshost_rows=1,
                       databases=["cloud", "cloud_usage", "cloudstack_ec2"],
                       users={"cloud": json.loads(state["secrets"][SECRETS.db_cloud])["password"]})
    state["ssm"][MARKER] = "bootstrapped by 10.100.0.2"
    state["iam"]["policies"] = []
    state["api"].update(admin_password=ADMIN_PASSWORD, keys_registered=1,
                        config={**state["api"]["config"], "host": "10.100.0.2",
                                "management.network.cidr": "10.100.0.0/16", "control.cidr": "169.254.0.0/17",
                                "system.vm.public.ip.reservation.mode.strictness": "true"})
    state["secrets"][SECRETS.admin] = json.dumps({"username": "admin", "password": ADMIN_PASSWORD})
    state["secrets"][SECRETS.api_keys] = json.dumps({"apikey": "api-1", "secretkey": "sec-1"})


def test_a_replaced_server_on_a_bootstrapped_database_needs_no_master_secret(machine):
    machine.update(bootstrapped_cloud)
    # the running cloud's version, which the replaced server installs (not the newest of the day)
    publish_for_hosts(machine, NEWEST)
    r = first_run(machine)
    calls = machine.calls()
    assert MASTER_SECRET not in secret_reads(calls) and SECRETS.admin not in secret_reads(calls)
    assert {c["user"] for c in calls if c["cmd"] == "mysql"} == {"cloud"}
    setup = [c for c in calls if c["cmd"] == "cloudstack-setup-databases"]
    assert len(setup) == 1 and "--schema-only" not in setup[0]["args"], "configured for the existing schema"
    assert "the cloud is bootstrapped" in r.output
    for value in SECRET_VALUES:
        assert value not in r.output


def test_a_cloud_password_the_database_does_not_have_names_the_rotation_after_bootstrap(machine):
    first_run(machine)
    machine.update(lambda s: s["secrets"].update(
        {SECRETS.db_cloud: json.dumps({"username": "cloud", "password": "NewCloudPw0rd789"})}))
    r = machine.rerun(SCRIPT)
    assert r.status != 0
    assert "did not accept connections within 2 s as cloud" in r.output and "rotating it" in r.output
    assert "NewCloudPw0rd789" not in r.output


def test_a_changed_admin_secret_does_not_break_a_later_boot(machine):
    """An operator changes the admin password in CloudStack, or puts another value into the
    secret: no later boot logs in as the admin, so neither stops it, and none resets it."""
    first_run(machine)
    machine.update(lambda s: s["api"].update(admin_password="ChangedInTheUi1"))
    machine.update(lambda s: s["secrets"].update(
        {SECRETS.admin: json.dumps({"username": "admin", "password": "RotatedInTheSecret2"})}))
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    assert machine.state()["api"]["admin_password"] == "ChangedInTheUi1"
    assert not [c for c in machine.calls() if c.get("api") in ("login", "updateUser")]


def test_a_bootstrap_policy_already_deleted_is_not_an_error(machine):
    # `pulumi up` saw the marker first and deleted one of them itself.
    machine.update(lambda s: s["iam"]["policies"].remove("cloudstack-ec2-bootstrap-db-master"))
    machine.update(lambda s: s["iam"]["grants"].pop("cloudstack-ec2-bootstrap-db-master"))
    r = first_run(machine)
    assert "has no inline policy cloudstack-ec2-bootstrap-db-master (already deleted)" in r.output
    assert machine.state()["iam"]["policies"] == []


def test_no_secret_value_is_in_any_recorded_argument_but_the_setup_tool_s(machine):
    """Every command the boot runs, with its arguments as /proc/<pid>/cmdline shows them to
    every local user: secrets go through root-only files and stdin. The one exception is
    cloudstack-setup-databases, which takes them only as arguments (README, Secrets)."""
    r = first_run(machine)
    machine.rerun(SCRIPT)
    for call in machine.calls():
        if call["cmd"] == "cloudstack-setup-databases":
            continue
        argv = " ".join(call["args"])
        assert not [v for v in SECRET_VALUES if v in argv], call["cmd"]
    kept = machine.file("/var/log/cloudstack-ec2-boot.log").read_text() + r.output
    assert not [v for v in SECRET_VALUES if v in kept]


def test_the_setup_tool_s_output_is_masked_before_the_log_keeps_it(machine):
    # cloudstack-setup-databases prints its SQL parameters, the password among them, when
    # MySQL refuses a statement (the fake does as runMysql does).
    machine.update(lambda s: s["db"].update(schema_fails=True))
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0 and "'passwd': '***'" in r.output
    log = machine.file("/var/log/cloudstack-ec2-boot.log").read_text()
    assert not [v for v in SECRET_VALUES if v in log + r.output]
