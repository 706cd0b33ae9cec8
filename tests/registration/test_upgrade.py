"""The rolling CloudStack upgrade (components/registration/upgrade.py) against the API emulator,
with SSM Run Command and RDS from moto.

moto's SendCommand records a command and answers Success without running anything: `Fleet`
stands in for the instances' SSM agents. It reads the very script each step sends and does to
the emulator what the script's commands do to a real server or host (packages installed from a
repository of the release the sources list names; the management service stopped, masked,
started; the agent restarted), and refuses what a real machine would refuse.
"""

from __future__ import annotations

import json
import re
from typing import Callable

import boto3
import pytest
from registration_engine import Engine
from registration_specs import FAST, REGION, make_spec

from components.registration import upgrade
from components.registration.upgrade import CloudStackUpgradeProvider, UpgradeError

#: What the CloudStack repository serves per release (newest last).
REPOSITORY = {"4.20": ["4.20.1.0", "4.20.2.0"], "4.22": ["4.22.0.0", "4.22.1.0"]}
MANAGEMENT = ["i-0management000001", "i-0management000002"]
DB = "cloudstack-test-db"


class Fleet:
    """The instances as SSM's agent runs the upgrade scripts on them (see the module docstring).
    A boot script's re-run does what userdata/management-server.sh and userdata/kvm-host.sh do
    (their own tests run them for real, tests/userdata): the first management server
    (CSEC2_MANAGEMENT_INDEX 0) publishes its version and keeps the hosts' packages of it
    (publish_version, publish_packages: `apt-get download`, so upstream must have it then); a
    host whose agent is not of the release boot.env names installs the published version, from
    that copy, else upstream, else fails naming it (install_packages). `run` returns what the
    script writes on the command's output."""

    def __init__(self, emulator, hosts: dict[str, str], version: str):
        self.emu, self.hosts = emulator, hosts
        self.repository = {release: list(versions) for release, versions in REPOSITORY.items()}
        self.release = {i: version.rsplit(".", 2)[0] for i in [*MANAGEMENT, *hosts]}
        self.installed = {i: version for i in [*MANAGEMENT, *hosts]}
        self.configured = {i: version.rsplit(".", 1)[0] for i in [*MANAGEMENT, *hosts]}   # boot.env
        self.published, self.copies = version, {version}   # the cloudstack-version anchor; packages/<v>/
        self.masked: set[str] = set()
        self.java: dict[str, int] = {i: 11 for i in [*MANAGEMENT, *hosts]}
        self.ran: list[tuple[str, str]] = []      # (step key, instance)
        self.fail_once: dict[str, str] = {}      # step key -> the error its first run ends with
        self.after: dict[str, Callable[[], None]] = {}   # step key -> what happens once it ran
        self.offline: set[str] = set()           # instances whose SSM agent is not online
        self.output: list[str] = []

    def run(self, instance: str, command: str) -> str:
        # AWS-RunShellScript runs the command with /bin/sh: a bash here-document of the step's script
        m = re.fullmatch(r"bash -s <<'(\w+)'\n(.*\n)\1\n", command, re.S)
        assert m, command
        script = m.group(2)
        key = re.search(r"upgrade step (\S+):", script).group(1)
        self.ran.append((key, instance))
        if key in self.fail_once:
            raise RuntimeError(self.fail_once.pop(key))
        self.output = []
        for line in script.splitlines():
            self._line(instance, line.strip())
        if key in self.after:
            self.after.pop(key)()
        return "".join(self.output)

    def _line(self, instance: str, line: str) -> None:
        if m := re.match(r"sed -i -E 's\|.*\\1([0-9.]+)\|' /etc/apt/sources.list.d/cloudstack.list", line):
            self.release[instance] = m.group(1)
        elif m := re.match(r"sed -i 's\|\^CSEC2_CLOUDSTACK_VERSION=\.\*\|CSEC2_CLOUDSTACK_VERSION=\"([0-9.]+)\"\|' ",
                           line):
            self.configured[instance] = m.group(1)
        elif "install openjdk-17-jre-headless" in line:
            self.java[instance] = 17
        elif m := re.search(r" install (cloudstack-(?:management|agent))(=([^\s*]+)(\*)?)? ", line + " "):
            # apt-get(8): NAME=VERSION is that very version; a trailing * a pattern
            candidates = [v for v in self.repository[self.release[instance]] if not m.group(3)
                          or (v.startswith(m.group(3) + ".") if m.group(4) else v == m.group(3))]
            if not candidates:
                raise RuntimeError(f"E: Version '{m.group(3)}{m.group(4) or ''}' for '{m.group(1)}' was not found")
            self.installed[instance] = candidates[-1]
        elif m := re.search(r"apt-cache show cloudstack-management=(\S+) .*\{ failed='(.*)'; exit 1; }$", line):
            # installed at that version, or apt-cache(8) show finds it in the index; else the step ends
            if self.installed[instance] != m.group(1) and m.group(1) not in self.repository[self.release[instance]]:
                raise RuntimeError(m.group(2))
        elif line == "dpkg-query -W -f='${Version}\\n' cloudstack-management >&4":
            self.output.append(self.installed[instance] + "\n")
        elif m := re.fullmatch(r'\[ "\$agent" = "(\S+)" \] \|\| \{ failed="(.*)"; exit 1; }', line):
            if self.installed[instance] != m.group(1):
                raise RuntimeError(m.group(2).replace("$agent", self.installed[instance]))
        elif line.startswith("systemctl stop cloudstack-management"):
            self.emu.stop_server(instance)
        elif line == "systemctl mask cloudstack-management.service":
            self.masked.add(instance)
        elif line == "systemctl unmask cloudstack-management.service":
            self.masked.discard(instance)
        elif line == "if ! systemctl start cloudstack-ec2-boot.service; then":
            self._boot(instance)
        elif line == "systemctl restart cloudstack-agent.service":
            self.emu.upgrade_agent(self.hosts[instance], self.installed[instance])

    def _of_configured(self, instance: str, version: str) -> bool:
        return re.match(re.escape(self.configured[instance]) + r"($|[.~+-])", version) is not None

    def _boot(self, instance: str) -> None:
        if instance in self.hosts:
            return self._host_packages(instance)
        if instance in self.masked:
            raise RuntimeError("Failed to start cloudstack-management.service: Unit is masked.")
        if instance == MANAGEMENT[0] and self.published != self.installed[instance]:
            version = self.installed[instance]
            if version not in self.repository[version.rsplit(".", 2)[0]]:
                raise RuntimeError(f"the boot script failed: ERROR in step 'keep cloudstack-agent and "
                                   f"cloudstack-common {version}': E: Version '{version}' for 'cloudstack-agent' "
                                   "was not found")
            self.published = version
            self.copies.add(version)
        self.emu.start_server(instance, self.installed[instance])

    def _host_packages(self, instance: str) -> None:
        if self._of_configured(instance, self.installed[instance]):
            return
        version = self.published
        if not self._of_configured(instance, version):
            raise RuntimeError(f"the boot script failed: ERROR in step 'packages': the management server runs "
                               f"cloudstack-management {version}, but this host is configured for CloudStack "
                               f"{self.configured[instance]}")
        if version not in self.copies and version not in self.repository[version.rsplit(".", 2)[0]]:
            raise RuntimeError(f"the boot script failed: ERROR in step 'packages': cloudstack-agent {version} is "
                               f"neither in the deployment's copy (s3://boot/packages/{version}/) nor in "
                               "http://download.cloudstack.org/ubuntu")
        self.installed[instance] = version


@pytest.fixture
def cloud(aws, emulator, api_secret, monkeypatch):
    """A registered zone of three hosts on 4.20.1.0, two management servers, a user VM on each
    host, the RDS instance, and moto's SendCommand running the scripts on a Fleet."""
    from moto.ssm.models import SimpleSystemManagerBackend

    emulator.db_version, emulator.system_template_version = "4.20.1.0", "4.20.1"
    emulator.servers = {i: "4.20.1.0" for i in MANAGEMENT}
    Engine(emulator.url, api_secret, REGION).up(make_spec(3, timeouts=FAST))
    hosts = {f"i-0host{n:013d}": f"10.100.0.{10 + n}" for n in range(3)}
    for ip in hosts.values():
        host = next(h for h in emulator.hosts.values() if h["ipaddress"] == ip)
        emulator.add_vm(host["id"], f"vm-{ip}")
    first_host = next(iter(emulator.hosts.values()))["id"]
    emulator.vms[emulator.add_vm(first_host, "r-1-VM", type="DomainRouter")]["guestnetworkid"] = "net-1"
    emulator.vms[emulator.add_vm(first_host, "r-2-VM", type="DomainRouter")]["vpcid"] = "vpc-1"
    boto3.client("rds", region_name=REGION).create_db_instance(
        DBInstanceIdentifier=DB, DBInstanceClass="db.t3.medium", Engine="mysql", MasterUsername="admin",
        MasterUserPassword="not-a-secret-1", AllocatedStorage=20)
    fleet = Fleet(emulator, hosts, "4.20.1.0")
    send = SimpleSystemManagerBackend.send_command

    def send_command(self, **kwargs):
        from moto.core.exceptions import JsonRESTError

        offline = [i for i in kwargs["instance_ids"] if i in fleet.offline]
        if offline:   # SendCommand refuses an instance whose agent is not online
            raise JsonRESTError("InvalidInstanceId", f"Instances [{offline}] not in a valid state for account "
                                                     f"123456789012")
        command = send(self, **kwargs)
        for instance in kwargs["instance_ids"]:
            invocation = command.invocations[[i["InstanceId"] for i in command.invocations].index(instance)]
            try:
                invocation.update(StandardOutputContent=fleet.run(instance, kwargs["parameters"]["commands"][0]))
            except RuntimeError as e:
                invocation.update(Status="Failed", StatusDetails="Failed", ResponseCode=100,
                                  StandardErrorContent=str(e))
        return command

    monkeypatch.setattr(SimpleSystemManagerBackend, "send_command", send_command)
    return fleet, api_secret


def props(emulator, secret_id, fleet, to_version, from_version="4.20.1") -> dict:
    return {"endpoint": emulator.url, "secret_id": secret_id, "region": REGION, "timeouts": FAST.as_dict(),
            "upgrade_timeouts": {"poll": 0.02, "version": 5, "host": 5, "template": 5, "system_vms": 5,
                                 "snapshot": 5, "command": 5},
            "from_version": from_version, "to_version": to_version, "management_ids": MANAGEMENT,
            "hosts": [{"instance": i, "ip": ip} for i, ip in fleet.hosts.items()], "db_instance": DB,
            "snapshot_prefix": "cloudstack-test", "state_parameter": "/cloudstack-ec2/test/upgrade/progress"}


def _all_on(emulator, fleet, version):
    assert set(emulator.servers.values()) == {version}
    assert {h["version"] for h in emulator.hosts.values()} == {version}
    assert {h["state"] for h in emulator.hosts.values()} == {"Up"}
    assert set(fleet.installed.values()) == {version}


def test_upgrade_4_20_to_4_22_with_two_servers_and_three_hosts(emulator, cloud):
    fleet, secret_id = cloud
    vms = {v["id"] for v in emulator.vms.values() if v["type"] == "User"}
    olds = {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"}
    result = CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.22"))

    assert result.outs["version"] == "4.22"
    _all_on(emulator, fleet, "4.22.1.0")
    # the database upgraded once, by the first server, and never a server beside one of another version
    assert emulator.db_upgrades == [("4.20.1.0", "4.22.1.0")] and emulator.version_skew == []
    # no VM stopped
    assert {v["id"] for v in emulator.vms.values() if v["type"] == "User" and v["state"] == "Running"} == vms
    # Java 17 everywhere before the first package of 4.22
    assert set(fleet.java.values()) == {17}
    # the guides' order: every server stopped before the first starts; then the other; then the hosts
    keys = [k for k, _ in fleet.ran]
    assert keys.index("stop:" + MANAGEMENT[1]) < keys.index("first:" + MANAGEMENT[0]) \
        < keys.index("server:" + MANAGEMENT[1]) < keys.index("agent:i-0host0000000000000")
    assert [k for k in keys if k.startswith("agent:")] == [f"agent:{i}" for i in fleet.hosts]
    # the snapshot, named after both versions, kept
    snapshot = boto3.client("rds", region_name=REGION).describe_db_snapshots(
        DBSnapshotIdentifier="cloudstack-test-4-20-1-to-4-22")["DBSnapshots"][0]
    assert snapshot["DBInstanceIdentifier"] == DB and snapshot["SnapshotType"] == "manual"
    # system VMs recreated on the new template, routers too (their network and VPC restarted with cleanup)
    system = [v for v in emulator.vms.values() if v["type"] in ("SecondaryStorageVm", "ConsoleProxy")]
    assert len(system) == 2 and {v["state"] for v in system} == {"Running"}
    routers = [v for v in emulator.vms.values() if v["type"] == "DomainRouter"]
    assert {(v.get("guestnetworkid"), v.get("vpcid"), v.get("template")) for v in routers} == {
        ("net-1", None, "4.22.1"), (None, "vpc-1", "4.22.1")}


def test_an_interrupted_upgrade_continues_after_the_first_server(emulator, cloud):
    fleet, secret_id = cloud
    fleet.fail_once["server:" + MANAGEMENT[1]] = "E: Could not get lock /var/lib/dpkg/lock-frontend"
    olds = {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"}
    news = props(emulator, secret_id, fleet, "4.22")
    with pytest.raises(UpgradeError) as err:
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, news)
    text = str(err.value)
    assert f"step server:{MANAGEMENT[1]} failed on instance {MANAGEMENT[1]}" in text
    assert "Could not get lock" in text and "run `pulumi up` again" in text
    # the first server runs 4.22 alone: the other is stopped and masked, never started on 4.20
    assert emulator.servers == {MANAGEMENT[0]: "4.22.1.0", MANAGEMENT[1]: None}
    assert MANAGEMENT[1] in fleet.masked
    ran_before = list(fleet.ran)

    # the next `pulumi up` (the state still has the old version) continues with the failed step
    result = CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, news)
    assert result.outs["version"] == "4.22"
    again = [k for k, _ in fleet.ran[len(ran_before):]]
    assert again[0] == "server:" + MANAGEMENT[1] and not any(k.startswith(("stop:", "first:", "java:"))
                                                            for k in again)
    _all_on(emulator, fleet, "4.22.1.0")
    assert emulator.db_upgrades == [("4.20.1.0", "4.22.1.0")] and emulator.version_skew == []


def test_a_patch_release_published_after_the_first_servers_step_is_installed_nowhere(emulator, cloud):
    # Upstream publishes 4.22.2.0 once the first server runs 4.22.1.0: the other server started on
    # 4.22.2.0 beside it would upgrade the live database beneath it, and the agents follow the first.
    fleet, secret_id = cloud
    fleet.after["first:" + MANAGEMENT[0]] = lambda: fleet.repository["4.22"].append("4.22.2.0")
    _upgrades_all_to_the_first_servers_version(emulator, fleet, secret_id,
                                               {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"})


def _upgrades_all_to_the_first_servers_version(emulator, fleet, secret_id, olds) -> None:
    result = CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.22"))
    assert result.outs["version"] == "4.22"
    _all_on(emulator, fleet, "4.22.1.0")
    assert emulator.db_upgrades == [("4.20.1.0", "4.22.1.0")] and emulator.version_skew == []


def test_a_run_resumed_after_a_patch_release_installs_the_first_servers_version(emulator, cloud):
    fleet, secret_id = cloud
    olds = stopped_in_the_second_server(emulator, fleet, secret_id)
    assert _record()["package"] == "4.22.1.0"
    fleet.repository["4.22"].append("4.22.2.0")   # days later
    _upgrades_all_to_the_first_servers_version(emulator, fleet, secret_id, olds)


def test_a_record_without_the_package_version_asks_the_first_server(emulator, cloud):
    # A record written before it kept the version: the first server says which one it installed.
    fleet, secret_id = cloud
    olds = stopped_in_the_second_server(emulator, fleet, secret_id)
    record = {k: v for k, v in _record().items() if k != "package"}
    boto3.client("ssm", region_name=REGION).put_parameter(Name=STATE, Value=json.dumps(record), Type="String",
                                                          Overwrite=True)
    fleet.repository["4.22"].append("4.22.2.0")
    ran_before = len(fleet.ran)
    _upgrades_all_to_the_first_servers_version(emulator, fleet, secret_id, olds)
    assert fleet.ran[ran_before:][:2] == [("package:" + MANAGEMENT[0], MANAGEMENT[0]),
                                          ("server:" + MANAGEMENT[1], MANAGEMENT[1])]


def test_a_run_resumed_once_upstream_dropped_the_first_servers_version_fails_naming_it(emulator, cloud):
    fleet, secret_id = cloud
    olds = stopped_in_the_second_server(emulator, fleet, secret_id)
    fleet.repository["4.22"] = ["4.22.2.0"]   # upstream's index lists only the newest patch release
    second = MANAGEMENT[1]
    with pytest.raises(UpgradeError, match=rf"step server:{second} failed on instance {second} .*cloudstack-management "
                                           r"4\.22\.1\.0, the version the first management server installed in "
                                           r"this upgrade, is neither installed here nor in the CloudStack repository"):
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.22"))
    # nothing installed, and the server still stopped and masked: a reboot starts nothing
    assert fleet.installed[second] == "4.20.1.0" and emulator.servers[second] is None and second in fleet.masked


def test_an_agent_of_another_version_than_the_first_servers_fails_its_step(emulator, cloud):
    # The published version changed during the upgrade (the first server's packages changed).
    fleet, secret_id = cloud

    def republished():
        fleet.repository["4.22"].append("4.22.2.0")
        fleet.published = "4.22.2.0"
    fleet.after["server:" + MANAGEMENT[1]] = republished
    olds = {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"}
    host = next(iter(fleet.hosts))
    with pytest.raises(UpgradeError, match=rf"step agent:{host} failed on instance {host} .*cloudstack-agent "
                                           r"4\.22\.2\.0 installed, not 4\.22\.1\.0, the version the first "
                                           r"management server installed"):
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.22"))


def _record() -> dict:
    return json.loads(boto3.client("ssm", region_name=REGION).get_parameter(Name=STATE)["Parameter"]["Value"])


def test_a_downgrade_is_refused_before_any_command(emulator, cloud):
    fleet, secret_id = cloud
    olds = {**props(emulator, secret_id, fleet, "4.22"), "version": "4.22"}
    with pytest.raises(UpgradeError, match=r"cloudstackVersion = '4.20'.*runs CloudStack 4.22.*downgrade"):
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.20"))
    assert fleet.ran == []


def test_nothing_to_do_when_the_version_is_unchanged(emulator, cloud):
    fleet, secret_id = cloud
    result = CloudStackUpgradeProvider().create(props(emulator, secret_id, fleet, "4.20.1"))
    assert result.outs["version"] == "4.20.1" and result.outs["steps"] == [] and fleet.ran == []


def test_an_older_patch_than_the_servers_run_is_refused_before_anything_stops(emulator, cloud):
    # "4.20" recorded (the servers installed its newest patch then, 4.20.1.0); "4.20.0" asked for
    # is a downgrade only the servers can tell.
    fleet, secret_id = cloud
    olds = {**props(emulator, secret_id, fleet, "4.20", from_version="4.20"), "version": "4.20"}
    with pytest.raises(UpgradeError, match=r"the servers run CloudStack 4\.20\.1\.0, newer.*4\.20\.1"):
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds,
                                           props(emulator, secret_id, fleet, "4.20.0", from_version="4.20"))
    assert fleet.ran == [] and set(emulator.servers.values()) == {"4.20.1.0"}
    # and pinning the patch the servers run already changes nothing on them
    result = CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds,
                                                props(emulator, secret_id, fleet, "4.20.1", from_version="4.20"))
    assert result.outs["version"] == "4.20.1" and fleet.ran == []


def test_a_run_resumed_with_every_server_stopped_starts_the_first_without_waiting_for_the_api(emulator, cloud):
    from components.registration.client import forget_connections

    fleet, secret_id = cloud
    fleet.fail_once["first:" + MANAGEMENT[0]] = "E: Failed to fetch http://download.cloudstack.org/ubuntu/dists"
    olds = {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"}
    news = props(emulator, secret_id, fleet, "4.22")
    with pytest.raises(UpgradeError, match=f"step first:{MANAGEMENT[0]} failed.*Failed to fetch"):
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, news)
    assert set(emulator.servers.values()) == {None} and set(MANAGEMENT) <= fleet.masked   # the API is down
    forget_connections()   # the next `pulumi up` runs in a new provider process
    result = CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, news)
    assert result.outs["version"] == "4.22"
    _all_on(emulator, fleet, "4.22.1.0")
    assert emulator.db_upgrades == [("4.20.1.0", "4.22.1.0")] and emulator.version_skew == []


def test_a_run_that_finds_the_api_down_before_any_step_is_recorded_goes_on(emulator, cloud):
    # An earlier run stopped the servers and ended before it could record the step.
    from components.registration.client import forget_connections

    fleet, secret_id = cloud
    for server in MANAGEMENT:
        emulator.stop_server(server)
    forget_connections()
    olds = {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"}
    result = CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.22"))
    assert result.outs["version"] == "4.22"
    _all_on(emulator, fleet, "4.22.1.0")


def test_a_snapshot_of_that_name_from_another_database_is_refused_before_anything_stops(emulator, cloud):
    # RDS snapshot identifiers are unique per account and region: another stack of the same name
    # (in another project, or "test_1" beside "test-1") may have taken the name for its database.
    fleet, secret_id = cloud
    rds = boto3.client("rds", region_name=REGION)
    rds.create_db_instance(DBInstanceIdentifier="another-stack-db", DBInstanceClass="db.t3.medium", Engine="mysql",
                           MasterUsername="admin", MasterUserPassword="not-a-secret-1", AllocatedStorage=20)
    rds.create_db_snapshot(DBSnapshotIdentifier="cloudstack-test-4-20-1-to-4-22",
                           DBInstanceIdentifier="another-stack-db")
    olds = {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"}
    with pytest.raises(UpgradeError, match=r"snapshot cloudstack-test-4-20-1-to-4-22 exists already and is of "
                                           r"the DB instance another-stack-db, not of this stack's " + DB):
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.22"))
    assert fleet.ran == [] and set(emulator.servers.values()) == {"4.20.1.0"}


def test_a_run_resumed_in_the_routers_step_restarts_only_the_routers_still_on_the_old_template(emulator, cloud):
    # A restart with cleanup interrupts the tenants' network: one already on the new template
    # (CloudStack's requiresupgrade false) is not restarted again.
    fleet, secret_id = cloud
    emulator.inject_job_failure("restartVPC", text="Failed to implement network elements and resources")
    olds = {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"}
    news = props(emulator, secret_id, fleet, "4.22")
    with pytest.raises(Exception, match="Failed to implement network elements"):
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, news)
    network_router = next(i for i, v in emulator.vms.items() if v.get("guestnetworkid") == "net-1")
    assert emulator.vms[network_router]["template"] == "4.22.1"

    result = CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, news)
    assert result.outs["version"] == "4.22"
    assert next(i for i, v in emulator.vms.items() if v.get("guestnetworkid") == "net-1") == network_router
    vpc_router = next(v for v in emulator.vms.values() if v.get("vpcid") == "vpc-1")
    assert vpc_router["template"] == "4.22.1"


def test_a_run_resumed_in_the_system_vm_step_keeps_the_system_vms_already_on_the_new_template(emulator, cloud):
    fleet, secret_id = cloud
    emulator.stuck_system_vms = {"ConsoleProxy"}     # the new console proxy never reaches Running
    olds = {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"}
    news = props(emulator, secret_id, fleet, "4.22")
    news["upgrade_timeouts"] = {**news["upgrade_timeouts"], "system_vms": 1}
    with pytest.raises(UpgradeError, match="gave up waiting for a new secondary storage VM and console proxy"):
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, news)
    storage_vm = next(v for v in emulator.vms.values() if v["type"] == "SecondaryStorageVm")
    assert storage_vm["state"] == "Running" and storage_vm["template"] == "4.22.1"

    emulator.stuck_system_vms = set()
    result = CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, news)
    assert result.outs["version"] == "4.22"
    # the secondary storage VM on the new template was left running; the console proxy runs now
    assert [v["id"] for v in emulator.vms.values() if v["type"] == "SecondaryStorageVm"] == [storage_vm["id"]]
    proxy = next(v for v in emulator.vms.values() if v["type"] == "ConsoleProxy")
    assert proxy["state"] == "Running" and proxy["template"] == "4.22.1"


def test_a_cloud_without_a_recorded_version_on_another_version_is_not_recorded_as_the_new_one(emulator, cloud):
    # A stack deployed before the version was recorded, cloudstackVersion changed meanwhile:
    # the upgrade resource is created with nothing recorded to upgrade from.
    fleet, secret_id = cloud
    with pytest.raises(UpgradeError, match=r"cloudstackVersion 4\.22: the servers run CloudStack 4\.20\.1\.0, "
                                           r"and the stack has no record.*Set cloudstackVersion to 4\.20\.1"):
        CloudStackUpgradeProvider().create(props(emulator, secret_id, fleet, "4.22", from_version=""))
    assert fleet.ran == []
    # the running version (or its release) is recorded as it is
    for version in ("4.20.1", "4.20"):
        result = CloudStackUpgradeProvider().create(props(emulator, secret_id, fleet, version, from_version=""))
        assert result.outs["version"] == version and result.outs["steps"] == [] and fleet.ran == []


def test_the_snapshot_is_taken_with_every_server_stopped(emulator, cloud, monkeypatch):
    # upgrade-4.22.rst: stop every management server, then back up the database: a snapshot
    # taken while servers still run misses what they write until they stop.
    from moto.rds.models import RDSBackend

    fleet, secret_id = cloud
    running_at_snapshot = []
    create = RDSBackend.create_db_snapshot

    def create_db_snapshot(self, *args, **kwargs):
        running_at_snapshot.append({s for s, v in emulator.servers.items() if v})
        return create(self, *args, **kwargs)

    monkeypatch.setattr(RDSBackend, "create_db_snapshot", create_db_snapshot)
    olds = {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"}
    CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.22"))
    assert running_at_snapshot == [set()]


def test_an_instance_whose_ssm_agent_is_offline_is_named_with_the_remedy(emulator, cloud):
    fleet, secret_id = cloud
    host = next(iter(fleet.hosts))
    fleet.offline.add(host)
    olds = {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"}
    news = props(emulator, secret_id, fleet, "4.22")
    with pytest.raises(UpgradeError, match=rf"step java:{host} could not be sent to instance {host} "
                                           r"\(InvalidInstanceId: .*SSM agent online.*continues with this step"):
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, news)
    fleet.offline.clear()
    assert CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, news).outs["version"] == "4.22"


def stopped_in_the_second_server(emulator, fleet, secret_id) -> dict:
    """An upgrade 4.20.1 -> 4.22 that failed upgrading the second server (the database upgraded
    by the first); returns the state's inputs and outputs, still those of 4.20.1."""
    fleet.fail_once["server:" + MANAGEMENT[1]] = "E: Could not get lock /var/lib/dpkg/lock-frontend"
    olds = {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"}
    with pytest.raises(UpgradeError):
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.22"))
    return olds


def test_another_target_while_an_upgrade_is_unfinished_is_refused_before_anything(emulator, cloud):
    fleet, secret_id = cloud
    olds = stopped_in_the_second_server(emulator, fleet, secret_id)
    ran_before, servers = list(fleet.ran), dict(emulator.servers)
    with pytest.raises(UpgradeError, match=r"cloudstackVersion = '4\.22\.1': the upgrade 4\.20\.1 -> 4\.22 is "
                                           rf"unfinished: it reached step server:{MANAGEMENT[1]} \(started, "
                                           r"unfinished\).*set cloudstackVersion to 4\.22 and run `pulumi up`"):
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.22.1"))
    assert fleet.ran == ran_before and emulator.servers == servers
    assert CloudStackUpgradeProvider().update(
        upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.22")).outs["version"] == "4.22"


STATE = "/cloudstack-ec2/test/upgrade/progress"


def test_the_version_set_back_after_the_servers_stopped_is_refused_naming_both_ways_on(emulator, cloud):
    fleet, secret_id = cloud
    olds = stopped_in_the_second_server(emulator, fleet, secret_id)
    ran_before, servers = list(fleet.ran), dict(emulator.servers)
    # the state keeps the inputs of before the failed update: setting 4.20.1 back changes no input
    reverted = props(emulator, secret_id, fleet, "4.20.1")
    assert {k: v for k, v in olds.items() if k not in ("version", "steps")} == reverted
    assert CloudStackUpgradeProvider().diff(upgrade.RESOURCE_ID, olds, reverted).changes
    with pytest.raises(UpgradeError) as err:
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, reverted)
    text = str(err.value)
    for part in ("cloudstackVersion = '4.20.1'", "the upgrade 4.20.1 -> 4.22 is unfinished",
                 f"step server:{MANAGEMENT[1]} (started, unfinished)", "may have been upgraded by 4.22",
                 "nothing was changed", "set cloudstackVersion to 4.22 and run `pulumi up`",
                 "--db-snapshot-identifier cloudstack-test-4-20-1-to-4-22 --db-instance-identifier " + DB,
                 f"aws ssm delete-parameter --name {STATE}"):
        assert part in text, (part, text)
    assert fleet.ran == ran_before and emulator.servers == servers and MANAGEMENT[1] in fleet.masked
    # the first way on: the upgrade to 4.22 continues where it stopped
    result = CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.22"))
    assert result.outs["version"] == "4.22"
    _all_on(emulator, fleet, "4.22.1.0")


def test_the_version_set_back_before_any_server_stopped_clears_the_record_and_starts_nothing(emulator, cloud):
    fleet, secret_id = cloud
    host = next(iter(fleet.hosts))
    fleet.fail_once["java:" + host] = "E: Unable to locate package openjdk-17-jre-headless"
    olds = {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"}
    with pytest.raises(UpgradeError):
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.22"))
    ssm = boto3.client("ssm", region_name=REGION)
    assert ssm.get_parameter(Name=STATE)["Parameter"]["Value"]
    ran_before = list(fleet.ran)
    reverted = props(emulator, secret_id, fleet, "4.20.1")
    assert CloudStackUpgradeProvider().diff(upgrade.RESOURCE_ID, olds, reverted).changes
    result = CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, reverted)
    assert result.outs["version"] == "4.20.1" and result.outs["steps"] == []
    assert fleet.ran == ran_before and set(emulator.servers.values()) == {"4.20.1.0"}
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=STATE)
    # settled: nothing more to do
    assert not CloudStackUpgradeProvider().diff(upgrade.RESOURCE_ID, {**reverted, "version": "4.20.1"},
                                                reverted).changes


def test_the_agents_install_the_first_servers_version_from_the_deployments_copy(emulator, cloud):
    # Upstream's index lists only the newest patch release of a series: once 4.22.2.0 is out,
    # 4.22.1.0, which the servers were upgraded to, is gone from it.
    fleet, secret_id = cloud
    fleet.after["server:" + MANAGEMENT[1]] = lambda: fleet.repository.update({"4.22": ["4.22.2.0"]})
    olds = {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"}
    result = CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.22"))
    assert result.outs["version"] == "4.22"
    _all_on(emulator, fleet, "4.22.1.0")
    keys = [k for k, _ in fleet.ran]
    assert keys.index("first:" + MANAGEMENT[0]) < min(keys.index("agent:" + h) for h in fleet.hosts)


def test_an_agent_version_neither_copied_nor_upstream_fails_naming_it(emulator, cloud):
    fleet, secret_id = cloud

    def gone():   # the copy deleted, upstream moved on
        fleet.copies.discard("4.22.1.0")
        fleet.repository["4.22"] = ["4.22.2.0"]
    fleet.after["server:" + MANAGEMENT[1]] = gone
    olds = {**props(emulator, secret_id, fleet, "4.20.1"), "version": "4.20.1"}
    host = next(iter(fleet.hosts))
    with pytest.raises(UpgradeError, match=rf"step agent:{host} failed on instance {host} .*cloudstack-agent "
                                           r"4\.22\.1\.0 is neither in the deployment's copy"):
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.22"))
    assert fleet.installed[host] == "4.20.1.0"


def test_a_record_kept_under_the_name_used_before_is_read_and_settled(emulator, cloud):
    # An upgrade under way when the program moved the record to <root>/upgrade/progress.
    fleet, secret_id = cloud
    olds = stopped_in_the_second_server(emulator, fleet, secret_id)
    news = props(emulator, secret_id, fleet, "4.22")
    ssm = boto3.client("ssm", region_name=REGION)
    legacy = "/cloudstack-ec2/test/cloudstack-upgrade"
    ssm.put_parameter(Name=legacy, Value=ssm.get_parameter(Name=STATE)["Parameter"]["Value"], Type="String")
    ssm.delete_parameter(Name=STATE)
    with pytest.raises(UpgradeError, match=r"the upgrade 4\.20\.1 -> 4\.22 is unfinished"):
        CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, props(emulator, secret_id, fleet, "4.20.1"))
    ran_before = len(fleet.ran)
    assert CloudStackUpgradeProvider().update(upgrade.RESOURCE_ID, olds, news).outs["version"] == "4.22"
    assert [k for k, _ in fleet.ran[ran_before:]][0] == "server:" + MANAGEMENT[1]
    CloudStackUpgradeProvider().delete(upgrade.RESOURCE_ID, news)
    for name in (STATE, legacy):
        with pytest.raises(ssm.exceptions.ParameterNotFound):
            ssm.get_parameter(Name=name)
