"""Several management servers on one database, their boot scripts run for real against
the recording fakes with a shared world (one account, one database): only the first
deploys the schema and bootstraps the cloud, the others wait for its bootstrap marker and
join as the installation guide's additional management servers do (the cloud user, never
the master or admin secret), no two run the database step at once, and a server of
another version refuses to start."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from bootlab import (ADMIN_PASSWORD, DATABASE_KEY, MANAGEMENT, MANAGEMENT_KEY, MASTER_SECRET, NEWEST, PREFIX,
                     SECRETS, TINY_WAITS, Machine, member_overlay, publish_anchor, render)

SERVERS = ("10.100.0.2", "10.100.0.3")
LOCK = "cloudstack_ec2.schema"
SYSTEMVM_KEY = "/usr/share/cloudstack-common/scripts/vm/systemvm/id_rsa.cloud"
#: naming.PARAM_BOOTSTRAPPED: the first server writes it when the cloud is bootstrapped.
BOOTSTRAP_MARKER = f"{PREFIX}/bootstrap/done"


def server(index: int, **waits):
    """Management server `index`'s boot (the first at 10.100.0.2, the second at 10.100.0.3)."""
    return replace(MANAGEMENT, server_index=index, management_servers=SERVERS,
                   overlay=member_overlay(f"{SERVERS[index]}/16"), fqdn=f"management-{index}.cloudstack.internal",
                   waits=replace(TINY_WAITS, **waits))


@pytest.fixture
def world(tmp_path):
    return tmp_path / "world"


def machine_in(world, tmp_path, name: str, first_done: bool = False, joiner: bool = False) -> Machine:
    """An instance in `world`. first_done: the first server bootstrapped the cloud already.
    joiner: an additional server, whose role never had the bootstrap policies
    (components/resources/management.py, ManagementServerArgs.first)."""
    m = Machine(tmp_path / name, world)
    if first_done:
        # the admin lives in the shared database: the first server already set the secret's password
        m.update(lambda s: s["api"].update(admin_password=ADMIN_PASSWORD))
    if first_done or joiner:
        # the first server deleted its bootstrap policies (finish_bootstrap) and the program
        # declares them no more; an additional server's role never had them
        m.update(lambda s: s["iam"].update(policies=[]))
    return m


def setup_calls(m):
    return [c for c in m.calls() if c["cmd"] == "cloudstack-setup-databases" and "--help" not in c["args"]]


def lock_events(m):
    return [c for c in m.calls() if c.get("lock") == LOCK]


def run(m, boot, results=None, key=None, env=None):
    r = m.run_user_data(render(boot), timeout=120, env=env)
    if results is not None:
        results[key] = r
    return r


def test_the_first_deploys_the_second_joins_with_the_same_keys(world, tmp_path):
    first = machine_in(world, tmp_path, "m0")
    r = run(first, server(0))
    assert r.status == 0, r.output
    assert [("--schema-only" in c["args"]) for c in setup_calls(first)] == [True]

    second = machine_in(world, tmp_path, "m1", first_done=True, joiner=True)
    r = run(second, server(1))
    assert r.status == 0, r.output
    # cloudstack-setup-databases cloud:<pw>@<db> -m <management key> -k <db key> -i <own ip>,
    # without --deploy-as or --schema-only (installation guide, additional management servers)
    (join,) = setup_calls(second)
    args = join["args"]
    assert not any(a.startswith(("--deploy-as", "--schema-only", "-d", "-s", "--force")) for a in args[1:])
    assert args[args.index("-m") + 1] == MANAGEMENT_KEY and args[args.index("-k") + 1] == DATABASE_KEY
    assert args[args.index("-i") + 1] == "10.100.0.3"
    assert second.state()["db"]["marker"]
    # the database step ran under the lock, taken and released
    events = lock_events(second)
    assert events[0]["granted"] and "released" in events[-1]
    # an additional server generates and publishes nothing: the first one's secrets, key and version
    calls = second.calls()
    assert not [c for c in calls if c["cmd"] == "aws" and ("put-secret-value" in c["args"]
                                                            or "put-parameter" in c["args"])]
    assert not [c for c in calls if c.get("api") == "registerUserKeys"]
    assert not [c for c in calls if c.get("api") == "updateUser"]
    # agents may use both servers: the first set `host` in the shared database while
    # bootstrapping, the second changes no setting; its own row is in cloud.mshost, of the same version
    assert first.state()["api"]["config"]["host"] == ",".join(SERVERS)
    assert not [c for c in calls if c.get("api") == "updateConfiguration"]
    assert sorted((r["ip"], r["version"]) for r in second.state()["db"]["mshost"]) == [
        ("10.100.0.2", NEWEST), ("10.100.0.3", NEWEST)]


def test_a_second_server_booting_first_waits_for_the_first_ones_bootstrap(world, tmp_path):
    first = machine_in(world, tmp_path, "m0")
    second = machine_in(world, tmp_path, "m1", first_done=True, joiner=True)
    results = {}
    waiting = threading.Thread(target=run, args=(second, server(1, database_seconds=90, api_seconds=90), results, 1))
    waiting.start()
    run(first, server(0), results, 0)
    waiting.join(150)
    assert results[0].status == 0, results[0].output
    assert results[1].status == 0, results[1].output
    assert f"waiting for the bootstrap marker {BOOTSTRAP_MARKER}" in results[1].output
    assert [("--schema-only" in c["args"]) for c in setup_calls(first) + setup_calls(second)] == [True, False]


def test_a_second_server_alone_never_deploys_the_schema(world, tmp_path):
    second = machine_in(world, tmp_path, "m1", joiner=True)
    r = run(second, server(1))
    assert r.status != 0
    assert f"the first management server did not bootstrap the cloud: no {BOOTSTRAP_MARKER} after 2 s" in r.output
    assert setup_calls(second) == [] and not second.state()["db"]["schema"]
    assert not [c for c in second.calls() if c["cmd"] == "cloudstack-setup-management"]


def test_a_replaced_first_server_joins_without_redeploying(world, tmp_path):
    assert run(machine_in(world, tmp_path, "m0"), server(0)).status == 0
    replaced = machine_in(world, tmp_path, "m0-replaced", first_done=True)
    # a copy of another key pair left on the new instance (apache/cloudstack #10943)
    key = replaced.file(SYSTEMVM_KEY)
    key.parent.mkdir(parents=True)
    key.write_text("-----BEGIN RSA PRIVATE KEY-----\nstale\n-----END RSA PRIVATE KEY-----\n")
    r = run(replaced, server(0))
    assert r.status == 0, r.output
    assert [("--schema-only" in c["args"]) for c in setup_calls(replaced)] == [False]
    assert not [s for s in replaced.state()["db"]["statements"] if "DROP DATABASE" in s]
    assert not key.exists() and "removed local key copies" in r.output
    # it is still the first server: it publishes for the hosts (the values are there already)
    assert "publish the cloudstack-management version" in r.output
    assert "publish the management server's SSH public key" in r.output


def test_two_first_servers_at_once_one_deploys_the_other_waits_for_the_lock(world, tmp_path):
    a, b = machine_in(world, tmp_path, "a"), machine_in(world, tmp_path, "b")
    results, slow = {}, {"FAKE_SCHEMA_SECONDS": "4"}
    threads = [threading.Thread(target=run, args=(m, server(0, database_seconds=60), results, k, slow))
               for k, m in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert results["a"].status == 0, results["a"].output
    assert results["b"].status == 0, results["b"].output
    schema = [c for m in (a, b) for c in setup_calls(m) if "--schema-only" in c["args"]]
    assert len(schema) == 1
    # the two database steps never overlapped, and the second asked while the first held it
    held = sorted((e["granted"], e["asked"], next(x["released"] for x in lock_events(m) if "released" in x))
                  for m in (a, b) for e in lock_events(m) if e.get("granted"))
    (granted_1, _, released_1), (granted_2, asked_2, _) = held
    assert released_1 <= granted_2 and asked_2 < released_1


@pytest.mark.parametrize("fresh", [True, False])
def test_a_server_of_another_version_refuses_to_start_beside_running_ones(world, tmp_path, fresh):
    assert run(machine_in(world, tmp_path, "m0"), server(0)).status == 0
    second = machine_in(world, tmp_path, "m1", first_done=True, joiner=True)
    # the first server runs 4.22.0.0 (its row heartbeats, or stopped doing so long ago)
    second.update(lambda s: s["db"].update(mshost=[{"ip": "10.100.0.2", "version": "4.22.0.0", "state": "Up",
                                                    "fresh": fresh}]))
    r = run(second, server(1))
    started = [c for c in second.calls() if c["cmd"] == "cloudstack-setup-management"]
    if fresh:
        assert r.status != 0 and "beside management servers of another version (10.100.0.2 runs 4.22.0.0)" in r.output
        assert started == [] and not second.state()["api"]["up"]
    else:
        assert r.status == 0, r.output
        assert started


def test_a_joining_server_never_reads_the_master_or_admin_secret(world, tmp_path):
    assert run(machine_in(world, tmp_path, "m0"), server(0)).status == 0
    second = machine_in(world, tmp_path, "m1", first_done=True, joiner=True)
    r = run(second, server(1))
    assert r.status == 0, r.output
    aws = [c["args"] for c in second.calls() if c["cmd"] == "aws"]
    read = [a[a.index("--secret-id") + 1] for a in aws if "get-secret-value" in a]
    # its role's grants (components/resources/management.py): the cloud user's and the keys' secrets
    assert read and set(read) <= {SECRETS.db_cloud, SECRETS.cloudstack_keys}, read
    assert not [a for a in aws if {SECRETS.admin, SECRETS.api_keys, MASTER_SECRET} & set(a)]
    assert not [a for a in aws if "get-parameter" in a and f"{PREFIX}/db-master-secret" in a]
    # it waited for the marker and never wrote it, nor touched the role's policies
    assert [a for a in aws if "get-parameter" in a and BOOTSTRAP_MARKER in a]
    assert not [a for a in aws if "put-parameter" in a or "iam" in a]
    # no API login: the admin's password is the first server's business
    assert not [c for c in second.calls() if c.get("api") == "login"]
    # its database logins are the cloud user's only (the master user never)
    assert {c["user"] for c in second.calls() if c["cmd"] == "mysql" and "user" in c} == {"cloud"}


#: A patch release upstream publishes after the first server installed NEWEST.
LATER = "4.22.2.0"
VERSION_PARAMETER = f"{PREFIX}/cloudstack-version"


def offering(m, *versions):
    """The versions m's CloudStack repository offers (oldest first) of the management packages."""
    m.update(lambda s: s["repo"].update({p: list(versions) for p in ("cloudstack-management", "cloudstack-common")}))


def installed(m):
    return {p: m.state()["versions"].get(p) for p in ("cloudstack-management", "cloudstack-common")}


@pytest.mark.parametrize("index", [1, 0])
def test_a_new_server_installs_the_running_version_not_a_newer_patch(world, tmp_path, index):
    # an additional server added later, or the first server replaced: the cloud runs NEWEST,
    # and upstream has a newer patch release of the configured 4.22 since
    assert run(machine_in(world, tmp_path, "m0"), server(0)).status == 0
    new = machine_in(world, tmp_path, f"new-{index}", first_done=True, joiner=index > 0)
    offering(new, "4.22.0.0", NEWEST, LATER)
    r = run(new, server(index))
    assert r.status == 0, r.output
    assert installed(new) == {"cloudstack-management": NEWEST, "cloudstack-common": NEWEST}
    assert f"installing cloudstack-management {NEWEST}, the running management servers' version" in r.output
    assert f"{SERVERS[index]}" in {row["ip"] for row in new.state()["db"]["mshost"]}
    assert {row["version"] for row in new.state()["db"]["mshost"]} == {NEWEST}


@pytest.mark.parametrize("type_,key", [("String", None), ("SecureString", "alias/aws/ssm")])
def test_a_joining_server_refuses_a_version_the_first_server_did_not_write(world, tmp_path, type_, key):
    assert run(machine_in(world, tmp_path, "m0"), server(0)).status == 0
    second = machine_in(world, tmp_path, "m1", first_done=True, joiner=True)
    offering(second, "4.22.0.0", NEWEST, LATER)
    # anyone with ssm:PutParameter could have written it so
    publish_anchor(second, VERSION_PARAMETER, LATER, type_=type_, key=key)
    r = run(second, server(1))
    assert r.status != 0
    assert f"SSM parameter {VERSION_PARAMETER} holds no value the management server wrote" in r.output
    assert installed(second) == {"cloudstack-management": None, "cloudstack-common": None}
    assert not [c for c in second.calls() if c["cmd"] == "cloudstack-setup-management"]


def test_a_joining_server_fails_clearly_when_the_running_version_is_gone_upstream(world, tmp_path):
    assert run(machine_in(world, tmp_path, "m0"), server(0)).status == 0
    second = machine_in(world, tmp_path, "m1", first_done=True, joiner=True)
    offering(second, "4.22.0.0", LATER)   # the index lists what it lists: NEWEST is not among it
    r = run(second, server(1))
    assert r.status != 0
    assert f"Version '{NEWEST}' for 'cloudstack-management' was not found" in r.output
    assert (f"every management server must run cloudstack-management {NEWEST}, which" in r.output
            and "install cloudstack-common and cloudstack-management" in r.output)
    # at once: no retries of what cannot succeed, and never the newer patch
    assert len([c for c in second.calls() if c["cmd"] == "apt-get" and "install" in c["args"]
                and any(a.startswith("cloudstack-management") for a in c["args"])]) == 1
    assert installed(second)["cloudstack-management"] is None
