"""Later runs of a deployed stack: what is chosen once, what can only grow, the MySQL
upgrade path, and the per-deployment SSM root (components.model.deployed, program.read_deployed).

A later run is the real program under the offline runner, given the stack's outputs
after its last update (what a StackReference to the stack itself returns under `pulumi up`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from components.model import deployed
from components.model import monitoring, naming
from components.cli import offline
from components.program import build
from components.model.settings import NAMESPACE, SettingsError, parse_settings

PARAMETER = "aws:ssm/parameter:Parameter"
RDS = "aws:rds/instance:Instance"
#: The SSM parameters Pulumi creates: all but the management server's SSH key and version,
#: SecureStrings the management server writes itself (components/resources/anchor.py), and
#: the bootstrap marker it writes once the cloud is bootstrapped.
PULUMI_PARAMETERS = tuple(p for p in naming.PARAMETERS
                          if p not in (naming.PARAM_MANAGEMENT_SSH_KEY, naming.PARAM_CLOUDSTACK_VERSION,
                                       naming.PARAM_BOOTSTRAPPED))


def agent_parameters(root: str) -> set[str]:
    """The CloudWatch agent's configuration of each role (components/resources/monitoring.py)."""
    return {monitoring.agent_parameter_name(root, role) for role in monitoring.AGENT_ROLES}


def dev_config(**overrides):
    from tests.unit.conftest import dev_config as base

    config = base()
    for key, value in overrides.items():
        config[f"{NAMESPACE}:{key}"] = value
    return config


def later_run(previous: dict, parameters: dict | None = None, **overrides) -> offline.OfflineRun:
    """A run after `previous` (the stack's outputs); `parameters`: SSM parameters in the account."""
    return offline.run_offline(build, dev_config(**overrides), project="cloudstack-ec2", stack="dev",
                               region="us-east-1", subnet_cidrs={"cloudstack": "10.0.0.0/24"},
                               previous_outputs=previous, existing_parameters=parameters or {})


def recorded(**values) -> dict:
    base = {"availabilityZone": "us-east-1b", "vpcCidr": "10.0.0.0/16", "cloudstackSubnetCidr": "10.0.0.0/24",
            "rootVolumeGb": 50, "dbAllocatedStorageGb": 20, "dbEngineVersion": "8.4",
            "parameterRoot": "/cloudstack-ec2/dev/0a1b2c3d"}
    return {deployed.OUTPUT: {**base, **values}}


@pytest.fixture(scope="module")
def first():
    return offline.run_offline(build, dev_config(), project="cloudstack-ec2", stack="dev", region="us-east-1",
                               subnet_cidrs={"cloudstack": "10.0.0.0/24"})


# --- pure ------------------------------------------------------------------------------------

def test_outputs_round_trip():
    assert deployed.from_outputs(None) == deployed.Deployed()
    d = deployed.from_outputs(recorded())
    assert (d.availability_zone, d.root_volume_gb, d.db_engine_version) == ("us-east-1b", 50, "8.4")
    legacy = deployed.from_outputs({"databaseEndpointParameter": "/cloudstack-ec2/dev/db-endpoint"})
    assert legacy.parameter_root == "/cloudstack-ec2/dev" and legacy.root_volume_gb is None
    # Only a recorded true counts as bootstrapped (a stack recorded before it: not).
    assert d.bootstrapped is False and legacy.bootstrapped is False
    assert deployed.from_outputs(recorded(bootstrapped=True)).bootstrapped is True
    assert deployed.from_outputs(recorded(bootstrapped="yes")).bootstrapped is False


@pytest.mark.parametrize("key,value,current", [
    ("rootVolumeGb", 40, "50 GiB"), ("dbAllocatedStorageGb", 25, "30 GiB"), ("dbEngineVersion", "8.0", "8.4"),
    ("availabilityZone", "us-east-1c", "us-east-1b"), ("vpcCidr", "10.0.0.0/17", "10.0.0.0/16"),
    ("cloudstackSubnetCidr", "10.0.1.0/24", "10.0.0.0/24")])
def test_changes_aws_cannot_make_are_refused_naming_key_current_and_new(key, value, current):
    settings = parse_settings({"adminCidrs": ["10.0.0.0/8"], key: value})
    previous = recorded(dbAllocatedStorageGb=30) if key == "dbAllocatedStorageGb" else recorded()
    problems = deployed.check_changes(settings, deployed.from_outputs(previous))
    assert [p.key for p in problems] == [key]
    assert current in problems[0].message and str(problems[0].value) == str(value)


#: A new value for each setting recorded under `chosenOnce`.
CHOSEN_ONCE_CHANGES = {
    "zoneName": "z2", "overlayCidr": "10.200.0.0/16", "vxlanId": 200, "multicastGroup": "239.255.0.101",
    "guestCidr": "10.2.2.0/24", "guestVlanRange": "2000-2999", "dbSubnetCidrs": ["10.0.250.0/24", "10.0.251.0/24"],
}
BASE = {"adminCidrs": ["10.0.0.0/8"]}


@pytest.mark.parametrize("key", sorted(CHOSEN_ONCE_CHANGES))
def test_a_changed_chosen_once_setting_is_refused_naming_key_deployed_and_new_value(key):
    previous = deployed.from_outputs(recorded(chosenOnce=deployed.chosen_once_values(parse_settings(BASE))))
    settings = parse_settings({**BASE, key: CHOSEN_ONCE_CHANGES[key]})
    (problem,) = deployed.check_changes(settings, previous)
    current = previous.chosen_once[key]
    current = json.dumps(current) if isinstance(current, list) else current  # as --set takes a list
    assert problem.key == key and str(CHOSEN_ONCE_CHANGES[key]) in str(problem.value)
    assert f"is {current} in the deployed stack" in problem.message and "new stack" in problem.message
    assert deployed.check_changes(parse_settings(BASE), previous) == []


def test_an_existing_vpc_recorded_is_not_swapped_for_a_new_one():
    values = {**deployed.chosen_once_values(parse_settings(BASE)), "vpcId": "vpc-0123456789abcdef0"}
    problems = deployed.check_changes(parse_settings(BASE), deployed.from_outputs(recorded(chosenOnce=values)))
    assert [(p.key, p.value) for p in problems] == [("vpcId", "")]
    assert "is vpc-0123456789abcdef0 in the deployed stack" in problems[0].message


def test_a_record_from_before_chosen_once_loads_and_is_checked_from_the_next_run():
    older = deployed.from_outputs(recorded())
    assert older.exists and older.chosen_once == {}
    assert deployed.check_changes(parse_settings({**BASE, "zoneName": "z2"}), older) == []
    run = later_run(recorded(), zoneName="z2")
    assert run.outputs[deployed.OUTPUT]["chosenOnce"]["zoneName"] == "z2"
    with pytest.raises(SettingsError) as err:
        later_run(run.outputs, zoneName="z3")
    assert "cloudstack-ec2:zoneName = 'z3'" in str(err.value) and "is z2 in the deployed stack" in str(err.value)


def test_readmes_choose_once_list_is_the_one_the_program_checks():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("Settings to choose once", 1)[1].split("- `rootVolumeGb`", 1)[0]
    bullets = [b for b in section.split("\n- ")[1:] if not b.startswith("the stack name")]  # names, not keys
    listed = {key for bullet in bullets for key in re.findall(r"`([a-zA-Z]+)`", bullet)}
    assert listed == set(deployed.CHOSEN_ONCE)


def test_growing_and_upgrading_are_allowed():
    settings = parse_settings({"adminCidrs": ["10.0.0.0/8"], "rootVolumeGb": 80, "dbAllocatedStorageGb": 100})
    previous = deployed.from_outputs(recorded(dbEngineVersion="8.0"))
    assert deployed.check_changes(settings, previous) == []
    assert deployed.upgrading_database(settings, previous)
    assert not deployed.upgrading_database(settings, deployed.from_outputs(recorded()))


# --- the program, first run and later runs ----------------------------------------------------

def test_the_program_reads_its_own_stack(first):
    assert first.stack_references == ["organization/cloudstack-ec2/dev"]


def test_first_run_records_what_the_next_one_checks(first):
    d = first.outputs[deployed.OUTPUT]
    subnet = next(r for r in first.registrations if r.name == "underlay-cloudstack")
    assert d["availabilityZone"] == subnet.inputs["availabilityZone"]
    assert (d["rootVolumeGb"], d["dbAllocatedStorageGb"], d["dbEngineVersion"]) == (50, 20, "8.4")


def test_ssm_names_carry_a_random_part_kept_in_the_stack(first):
    ids = first.of_type("random:index/randomId:RandomId")
    deployment_id = next(r for r in ids if r.name == "deployment-id")
    root = naming.parameter_root("dev", deployment_id.state["hex"])
    assert first.outputs[deployed.OUTPUT]["parameterRoot"] == root
    names = {r.inputs["name"] for r in first.of_type(PARAMETER)}
    assert names == {f"{root}/{p}" for p in PULUMI_PARAMETERS} | agent_parameters(root)


def test_later_run_takes_the_az_of_the_existing_subnet():
    run = later_run(recorded(availabilityZone="us-east-1b"))
    assert run.outputs[deployed.OUTPUT]["availabilityZone"] == "us-east-1b"
    assert next(r for r in run.registrations if r.type == RDS).inputs["availabilityZone"] == "us-east-1b"


def test_later_run_refuses_another_az_before_declaring_anything():
    with pytest.raises(SettingsError) as err:
        later_run(recorded(availabilityZone="us-east-1b"), availabilityZone="us-east-1c")
    assert "cloudstack-ec2:availabilityZone = 'us-east-1c'" in str(err.value) and "us-east-1b" in str(err.value)


def test_later_run_refuses_shrinking_storage():
    with pytest.raises(SettingsError) as err:
        later_run(recorded(rootVolumeGb=100, dbAllocatedStorageGb=50), rootVolumeGb=60, dbAllocatedStorageGb=20)
    assert {p.key for p in err.value.problems} == {"rootVolumeGb", "dbAllocatedStorageGb"}


def test_mysql_80_to_84_is_a_major_upgrade_applied_at_once():
    run = later_run(recorded(dbEngineVersion="8.0"), dbEngineVersion="8.4")
    db = next(r for r in run.registrations if r.type == RDS)
    assert db.inputs["engineVersion"] == "8.4"
    assert db.inputs["allowMajorVersionUpgrade"] is True and db.inputs["applyImmediately"] is True
    group = next(r for r in run.registrations if r.type == "aws:rds/parameterGroup:ParameterGroup")
    assert group.inputs["family"] == "mysql8.4"
    steady = next(r for r in later_run(recorded()).registrations if r.type == RDS)
    assert steady.inputs["allowMajorVersionUpgrade"] is False and "applyImmediately" not in steady.inputs


def test_stack_deployed_before_the_random_part_keeps_its_parameter_names():
    run = later_run({"databaseEndpointParameter": "/cloudstack-ec2/dev/db-endpoint", "zoneName": "zone1"})
    assert {r.inputs["name"] for r in run.of_type(PARAMETER)} == {f"/cloudstack-ec2/dev/{p}"
                                                                    for p in PULUMI_PARAMETERS} | \
        agent_parameters("/cloudstack-ec2/dev")
    assert not [r for r in run.of_type("random:index/randomId:RandomId") if r.name == "deployment-id"]
    # Its database keeps the name pulumi-aws gave it (a new identifier would replace it),
    # so its error log group stays RDS's own (README: Cleanup).
    assert "identifier" not in next(r for r in run.registrations if r.type == RDS).inputs
    assert not [g for g in run.of_type("aws:cloudwatch/logGroup:LogGroup") if g.name == "database-error-log"]
    # The instances' log groups live under its parameter root.
    assert {g.inputs["name"] for g in run.of_type("aws:cloudwatch/logGroup:LogGroup")} == {
        f"/cloudstack-ec2/dev/{role}" for role in monitoring.ROLES}


def test_plan_command_checks_a_change_against_the_deployed_outputs(tmp_path, capsys):
    from components.cli import commands as cli

    previous = tmp_path / "outputs.json"
    # All of `pulumi stack output --json`'s outputs the plan reads: the hosts keep their type.
    hosts = {str(i): {"instanceId": f"i-0{i:016x}", "instanceType": "m5zn.metal", "cluster": 0} for i in range(2)}
    previous.write_text(__import__("json").dumps({**recorded(rootVolumeGb=100), "hosts": hosts}))
    root = str(Path(__file__).resolve().parents[2])
    assert cli.main(["plan", "--dir", root, "--stack", "dev", "--previous", str(previous)]) == 2
    assert "cloudstack-ec2:rootVolumeGb = 50" in capsys.readouterr().err
    assert cli.main(["plan", "--dir", root, "--stack", "dev", "--previous", str(previous),
                     "--set", "rootVolumeGb=100"]) == 0


def test_a_stack_from_before_consoles_is_told_its_router_is_replaced_once():
    before_consoles = recorded()
    assert "consoleAddress" not in before_consoles[deployed.OUTPUT]
    run = later_run(before_consoles)
    [warning] = [w for w in run.warnings if "console address" in w]
    assert "REPLACED once" in warning and "restart the management server" in warning
    assert run.outputs[deployed.OUTPUT]["consoleAddress"] is True
    # The next update (and a first run) says nothing.
    assert not [w for w in later_run(recorded(consoleAddress=True)).warnings if "console address" in w]
    assert not deployed.upgrade_warnings(deployed.Deployed())


def test_outputs_give_the_boot_script_generation_and_the_console_address():
    d = deployed.from_outputs({**recorded(bootScripts=2), "router": {"consolePrivateIp": "10.0.0.52"}})
    assert (d.boot_scripts, d.console_private_ip) == (2, "10.0.0.52")
    older = deployed.from_outputs(recorded())
    assert (older.boot_scripts, older.console_private_ip) == (0, "")


def test_a_stack_from_before_the_new_boot_scripts_is_told_which_instances_to_replace(first):
    assert first.outputs[deployed.OUTPUT]["bootScripts"] == deployed.BOOT_SCRIPTS == 2
    assert not [w for w in first.warnings if "renewInstances" in w]
    run = later_run(recorded(consoleAddress=True))
    [warning] = [w for w in run.warnings if "renewInstances" in w]
    names = {r.name for r in run.registrations if r.type == "aws:ec2/instance:Instance"}
    # The router's and the management server's instances, by the names renewInstances takes
    # (`pulumi up --replace` would relaunch the recorded boot: the ignored user data).
    for i, name in enumerate(("router", "management")):
        assert name in names
        assert f"`pulumi config set --path 'renewInstances[{i}]' {name}`" in warning
    assert "`pulumi config rm renewInstances`" in warning
    for reason in ("tenants' own address", "trust anchors", "generated secrets"):
        assert reason in warning
    assert run.outputs[deployed.OUTPUT]["bootScripts"] == 2
    # A lower generation is told too; the recorded one is not.
    assert "renewInstances[1]' management" in deployed.upgrade_warnings(
        deployed.from_outputs(recorded(bootScripts=1)))[0]
    assert not deployed.upgrade_warnings(deployed.from_outputs(recorded(consoleAddress=True, bootScripts=2)))


def test_later_run_keeps_the_secrets_it_created_and_their_values():
    # A stack deployed when Pulumi generated the values (RandomPassword, SecretVersion):
    # the secrets are declared again under the same names (no replacement, so no new
    # secret), with no version of Pulumi's (deleting the old SecretVersion resources
    # leaves AWSCURRENT, and so the values, in place), and no generated value.
    first_run = offline.run_offline(build, dev_config(), project="cloudstack-ec2", stack="dev", region="us-east-1",
                                    subnet_cidrs={"cloudstack": "10.0.0.0/24"})
    run = later_run(recorded())
    secret = "aws:secretsmanager/secret:Secret"
    assert {(r.urn, r.inputs["namePrefix"]) for r in run.of_type(secret)} == \
        {(r.urn, r.inputs["namePrefix"]) for r in first_run.of_type(secret)}
    assert {r.name for r in run.of_type(secret)} == {
        "management-db-cloud", "management-cloudstack-keys", "management-admin", "management-api-keys"}
    assert run.of_type("aws:secretsmanager/secretVersion:SecretVersion") == []
    assert run.of_type("random:index/randomPassword:RandomPassword") == []
    # The database: RDS manages its master password from now on (it sets a new one).
    db = next(r for r in run.registrations if r.type == RDS)
    assert db.inputs["manageMasterUserPassword"] is True and "password" not in db.inputs


# --- cloudstackVersion: recorded, never downgraded, hosts install the recorded one -------------

def test_first_run_records_the_cloudstack_version(first):
    assert first.outputs[deployed.OUTPUT]["cloudstackVersion"] == "4.22"
    assert deployed.from_outputs(recorded(cloudstackVersion="4.20.1")).cloudstack_version == "4.20.1"
    assert deployed.from_outputs(recorded()).cloudstack_version == ""


@pytest.mark.parametrize("installed,requested,words", [
    ("4.22", "4.20", ("runs CloudStack 4.22", "downgrade", "keep 4.22", "snapshot")),
    ("4.22.1", "4.22.0", ("runs CloudStack 4.22.1", "downgrade")),
    ("4.21", "4.19.3", ("downgrade",)),
    ("4.20", "4.23", ("documents upgrades from 4.22 on, not from 4.20", "upgrade to 4.22 first")),
    ("4.19.1", "4.23.0", ("upgrade to 4.22 first",)),
])
def test_a_downgrade_or_an_undocumented_jump_is_refused_naming_key_current_and_requested(installed, requested,
                                                                                          words):
    settings = parse_settings({"adminCidrs": ["10.0.0.0/8"], "cloudstackVersion": requested,
                               "dbEngineVersion": "8.0"})
    [problem] = deployed.check_changes(settings, deployed.from_outputs(
        recorded(cloudstackVersion=installed, dbEngineVersion="8.0")))
    assert (problem.key, problem.value) == ("cloudstackVersion", requested)
    assert installed in problem.message
    for word in words:
        assert word in problem.message


@pytest.mark.parametrize("installed,requested", [
    ("4.20", "4.22"), ("4.20.1", "4.22.1"), ("4.19", "4.22"), ("4.21", "4.22"), ("4.22", "4.23"),
    ("4.22.0", "4.22.1"), ("4.22.0", "4.22"), ("4.22", "4.22.1")])
def test_documented_upgrades_pass_the_rules(installed, requested):
    from components.model import upgrades

    assert upgrades.check_version_change(installed, requested) is None
    assert upgrades.is_change(installed, requested)
    assert not upgrades.is_change(installed, installed) and not upgrades.is_change("", requested)


def test_hosts_added_later_install_the_recorded_version_not_the_requested_one():
    # The stack runs 4.20.1; a host added now installs it, not the configured 4.22 (the
    # management server it joins runs 4.20.1, and kvm-host.sh refuses any other version).
    from tests.unit.conftest import Deployed as Inspect

    settings = parse_settings({"adminCidrs": ["10.0.0.0/8"]})
    assert deployed.installed_version(settings, deployed.from_outputs(recorded(cloudstackVersion="4.20.1"))) \
        == "4.20.1"
    assert deployed.installed_version(settings, deployed.Deployed()) == "4.22"
    run = later_run(recorded(cloudstackVersion="4.20.1", consoleAddress=True, bootScripts=2, dbEngineVersion="8.0"),
                    cloudstackVersion="4.20.1", dbEngineVersion="8.0", hostCount=3)
    hosts = [r for r in run.of_type("aws:ec2/instance:Instance") if r.name.startswith("kvm-host")]
    assert len(hosts) == 3
    assert {Inspect.boot_env(h)["CSEC2_CLOUDSTACK_VERSION"] for h in hosts} == {"4.20.1"}
    assert run.outputs[deployed.OUTPUT]["cloudstackVersion"] == "4.20.1"


def test_a_version_change_is_an_upgrade_through_the_api_so_it_needs_the_registration():
    with pytest.raises(SettingsError) as err:
        later_run(recorded(cloudstackVersion="4.20", dbEngineVersion="8.0"), cloudstackVersion="4.22",
                  dbEngineVersion="8.0", registerCloud=False)
    assert "cloudstack-ec2:cloudstackVersion = '4.22'" in str(err.value) and "registerCloud" in str(err.value)
    assert "keep 4.20" in str(err.value)


def test_an_upgrade_is_planned_with_its_steps_and_hosts_added_meanwhile_install_the_running_version():
    from components.registration import upgrade
    from tests.unit.conftest import Deployed as Inspect

    run = later_run(recorded(cloudstackVersion="4.20.1", consoleAddress=True, bootScripts=2, dbEngineVersion="8.0"),
                    cloudstackVersion="4.22", dbEngineVersion="8.0", hostCount=3)
    [resource] = run.of_type(upgrade.TYPE)
    assert (resource.inputs["from_version"], resource.inputs["to_version"]) == ("4.20.1", "4.22")
    management = next(r for r in run.of_type("aws:ec2/instance:Instance") if r.name == "management")
    assert resource.inputs["management_ids"] == [management.id]
    assert [h["ip"] for h in resource.inputs["hosts"]] == ["10.100.0.10", "10.100.0.11", "10.100.0.12"]
    steps = [s.split(":")[0] for s in resource.state["steps"]]
    assert steps[0] == "java" and steps[-3:] == ["template", "system-vms", "routers"]
    assert steps.index("stop") < steps.index("snapshot") < steps.index("first")
    assert steps.index("first") < steps.index("agent") and steps.count("agent") == 3
    assert resource.inputs["state_parameter"].endswith("/upgrade/progress")
    # A host added in this update boots on the version the servers run until the upgrade.
    hosts = [r for r in run.of_type("aws:ec2/instance:Instance") if r.name.startswith("kvm-host")]
    assert {Inspect.boot_env(h)["CSEC2_CLOUDSTACK_VERSION"] for h in hosts} == {"4.20.1"}
    # The recorded version is the upgrade's result: the new one once every step is done.
    assert run.outputs[deployed.OUTPUT]["cloudstackVersion"] == "4.22"
    [warning] = [w for w in run.warnings if "upgrades CloudStack" in w]
    assert "4.20.1 -> 4.22" in warning and "UI and API are down" in warning and "VMs keep running" in warning
    assert not [w for w in later_run(recorded(cloudstackVersion="4.22", consoleAddress=True, bootScripts=2)).warnings
                if "upgrades CloudStack" in w]


UPGRADE_RECORD = "/cloudstack-ec2/dev/0a1b2c3d/upgrade/progress"


def test_the_version_set_back_after_an_upgrade_stopped_the_servers_is_refused_before_anything():
    from components.model import upgrades

    record = upgrades.Progress("4.20.1", "4.22", frozenset({"java:i-1", "stop:i-1", "snapshot"}), "first:i-1")
    previous = recorded(cloudstackVersion="4.20.1", consoleAddress=True, bootScripts=2, dbEngineVersion="8.0")
    with pytest.raises(SettingsError) as err:
        later_run(previous, {UPGRADE_RECORD: record.text()}, cloudstackVersion="4.20.1", dbEngineVersion="8.0")
    text = str(err.value)
    for part in ("cloudstack-ec2:cloudstackVersion = '4.20.1'", "the upgrade 4.20.1 -> 4.22 is unfinished",
                 "first:i-1 (started, unfinished)", "set cloudstackVersion to 4.22",
                 "--db-snapshot-identifier cloudstack-dev-4-20-1-to-4-22",
                 f"aws ssm delete-parameter --name {UPGRADE_RECORD}"):
        assert part in text, (part, text)
    # the upgrade's own target is its way on
    run = later_run(previous, {UPGRADE_RECORD: record.text()}, cloudstackVersion="4.22", dbEngineVersion="8.0")
    assert run.outputs[deployed.OUTPUT]["cloudstackVersion"] == "4.22"


def test_the_version_set_back_before_any_server_stopped_is_told_its_record_is_cleared():
    from components.model import upgrades

    record = upgrades.Progress("4.20.1", "4.22", frozenset({"java:i-1"}))
    run = later_run(recorded(cloudstackVersion="4.20.1", consoleAddress=True, bootScripts=2, dbEngineVersion="8.0"),
                    {UPGRADE_RECORD: record.text()}, cloudstackVersion="4.20.1", dbEngineVersion="8.0")
    [warning] = [w for w in run.warnings if "4.20.1 -> 4.22" in w]
    assert "clears its record and starts nothing" in warning


def test_the_upgrade_waits_for_the_template_and_system_vms_as_long_as_the_settings_say():
    from components.registration import upgrade

    for minutes in (30, 90):
        run = later_run(recorded(cloudstackVersion="4.20.1", consoleAddress=True, bootScripts=2, dbEngineVersion="8.0"),
                        cloudstackVersion="4.22", dbEngineVersion="8.0", systemVmWaitMinutes=minutes)
        [resource] = run.of_type(upgrade.TYPE)
        assert resource.inputs["upgrade_timeouts"] == {"template": minutes * 60, "system_vms": minutes * 60}


def test_a_stack_from_before_the_version_was_recorded_records_the_configured_one():
    run = later_run(recorded(consoleAddress=True, bootScripts=2))
    assert run.outputs[deployed.OUTPUT]["cloudstackVersion"] == "4.22"


def test_the_offline_plan_shows_the_upgrade_steps(tmp_path, capsys):
    from components.cli import commands as cli

    previous = tmp_path / "outputs.json"
    hosts = {str(i): {"instanceId": f"i-0{i:016x}", "instanceType": "m5zn.metal", "cluster": 0} for i in range(2)}
    previous.write_text(__import__("json").dumps(
        {**recorded(cloudstackVersion="4.20", dbEngineVersion="8.0", consoleAddress=True, bootScripts=2),
         "hosts": hosts}))
    root = str(Path(__file__).resolve().parents[2])
    assert cli.main(["plan", "--dir", root, "--stack", "dev", "--previous", str(previous),
                     "--set", "dbEngineVersion=8.0", "--set", "cloudstackVersion=4.22"]) == 0
    text = capsys.readouterr().out
    assert "CloudStack upgrade 4.20 -> 4.22" in text
    lines = [line.strip() for line in text[text.index("CloudStack upgrade"):].splitlines()[1:16]]
    assert lines[0].startswith("java:")
    assert any(line.startswith("snapshot: RDS snapshot cloudstack-dev-4-20-to-4-22") for line in lines)
    assert any(line.startswith("first:") and "database upgrade runs here, once" in line for line in lines)
    # without a change of version, no upgrade section
    assert cli.main(["plan", "--dir", root, "--stack", "dev", "--previous", str(previous),
                     "--set", "dbEngineVersion=8.0", "--set", "cloudstackVersion=4.20"]) == 0
    assert "CloudStack upgrade" not in capsys.readouterr().out


# --- routerCount 1 -> 2: router 0's boot ------------------------------------------------------

def pair_outputs(in_pair=None) -> dict:
    router = {"consolePrivateIp": "10.0.0.52", "pair": [{"privateIp": "10.0.0.50"}, {"privateIp": "10.0.0.53"}]}
    if in_pair is not None:
        router[deployed.ROUTER_IN_PAIR] = in_pair
    return {**recorded(bootScripts=2), "router": router}


@pytest.mark.parametrize("outputs, count, renewal, in_pair", [
    ({}, 2, False, True),                                              # a new stack: router 0 launched in the pair
    ({}, 1, False, False),
    ({**recorded(bootScripts=2), "router": {"consolePrivateIp": "10.0.0.52"}}, 2, False, False),  # adds router 1
    (pair_outputs(in_pair=False), 2, True, True),                      # the update after: router 0 replaced
    (pair_outputs(in_pair=True), 2, False, True),
    (pair_outputs(), 2, True, True),                                   # a pair that never recorded it: once
    (pair_outputs(in_pair=False), 1, False, False),                    # back to one router: nothing replaced
])
def test_router_0_is_replaced_with_the_pairs_boot_only_in_the_update_after_router_1_was_added(
        outputs, count, renewal, in_pair):
    settings = parse_settings({"adminCidrs": ["10.0.0.0/8"], "routerCount": count})
    previous = deployed.from_outputs(outputs)
    assert deployed.router0_renewal(settings, previous) is renewal
    assert deployed.router0_in_pair(settings, previous) is in_pair


def test_the_router_output_records_router_0s_boot_strictly():
    assert deployed.from_outputs(pair_outputs(in_pair=True)).router0_in_pair is True
    assert deployed.from_outputs(pair_outputs(in_pair="yes")).router0_in_pair is False
    assert deployed.from_outputs(pair_outputs()).router0_in_pair is False
