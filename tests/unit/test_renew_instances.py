"""renewInstances: relaunching named instances with their current boot script.

Every instance ignores changes of its user data, and Pulumi builds a replacement from the goal
state, in which an ignored property keeps its recorded value (Pulumi docs, resource option
"ignoreChanges"), so `pulumi up --replace` relaunches the old boot. An instance named in
renewInstances is replaced instead when its user data differs from the recorded one
(replace_on_changes), and no other instance is touched."""

from __future__ import annotations

import pytest

from components.model import deployed, naming
from components.model.settings import SettingsError, parse_settings

BASE = {"adminCidrs": ["10.0.0.0/8"]}
RENEWED = ("router-1", "management-1", "kvm-host-1")


def problems(**raw):
    with pytest.raises(SettingsError) as err:
        parse_settings({**BASE, **raw})
    return err.value.problems


# --- settings -----------------------------------------------------------------------------------

def test_the_accepted_names_are_the_instances_the_counts_imply():
    assert naming.instance_names(2, 2, 2) == (
        "router", "router-1", "management", "management-1", "kvm-host-0", "kvm-host-1")
    settings = parse_settings({**BASE, "routerCount": 2, "managementServerCount": 2, "hostCount": 2,
                               "renewInstances": list(RENEWED)})
    assert settings.renew_instances == RENEWED
    assert parse_settings(BASE).renew_instances == ()


@pytest.mark.parametrize("name", ["router-1", "management-1", "kvm-host-3", "mgmt", "kvm-host-01", "Router"])
def test_a_name_no_instance_has_is_refused_with_the_accepted_names(name):
    [problem] = problems(hostCount=3, renewInstances=["router", name])
    assert (problem.key, problem.value) == ("renewInstances", name)
    assert "accepted: router, management, kvm-host-0, kvm-host-1, kvm-host-2" in str(problem)
    assert str(problem).startswith(f"cloudstack-ec2:renewInstances = '{name}'")


def test_a_value_that_is_not_a_list_of_names_is_refused():
    assert [p.key for p in problems(renewInstances=[1])] == ["renewInstances"]


def test_a_kvm_host_named_is_warned_of_loudly_and_a_router_is_not():
    warned = parse_settings({**BASE, "hostCount": 2, "renewInstances": ["kvm-host-1"]}).warnings
    [warning] = [w for w in warned if "renewInstances" in w]
    assert "kvm-host-1" in warning and "DELETES the instance" in warning and "maintenance" in warning
    quiet = parse_settings({**BASE, "renewInstances": ["router", "management"]}).warnings
    assert not [w for w in quiet if "renewInstances" in w]


# --- the instances under Pulumi mocks ---------------------------------------------------------

@pytest.fixture(scope="module")
def renewed(deploy):
    return deploy(routerCount=2, managementServerCount=2, hostCount=2, renewInstances=list(RENEWED))


def test_named_instances_are_replaced_on_a_new_user_data_and_the_others_keep_theirs(renewed):
    names = {i.name for i in renewed.instances()}
    assert names == set(naming.instance_names(2, 2, 2))
    for instance in renewed.instances():
        if instance.name in RENEWED:
            assert "userDataBase64" not in instance.ignore_changes, instance.name
            assert instance.replace_on_changes == ("userDataBase64",), instance.name
        else:
            assert "userDataBase64" in instance.ignore_changes, instance.name
            assert instance.replace_on_changes == (), instance.name
        # The plain user data stays ignored either way, and a replacement never runs beside its original.
        assert "userData" in instance.ignore_changes and instance.delete_before_replace, instance.name
    # A KVM host keeps its instance type even when renewed.
    assert "instanceType" in renewed.instance("kvm-host-1").ignore_changes


def test_without_the_setting_every_instance_ignores_its_user_data(dev):
    assert all("userDataBase64" in i.ignore_changes and i.replace_on_changes == () for i in dev.instances())


# --- the advice names the setting -------------------------------------------------------------

def test_the_warnings_tell_to_relaunch_through_the_setting_not_replace():
    old = deployed.from_outputs({deployed.OUTPUT: {
        "availabilityZone": "us-east-1b", "vpcCidr": "10.0.0.0/16", "cloudstackSubnetCidr": "10.0.0.0/24",
        "rootVolumeGb": 50, "dbAllocatedStorageGb": 20, "dbEngineVersion": "8.4", "consoleAddress": True,
        "parameterRoot": "/cloudstack-ec2/dev/0a1b2c3d"}})
    from components.model.frontend import running_server_warnings

    for warning in (*deployed.upgrade_warnings(old), *running_server_warnings(old, True, ["10.0.253.128/26"])):
        assert "`pulumi config set --path 'renewInstances[0]' router`" in warning
        assert "`pulumi config set --path 'renewInstances[1]' management`" in warning
        assert "then `pulumi up`; then `pulumi config rm renewInstances`" in warning
        assert "pulumi up --replace '" not in warning
