"""ManagementServer and KvmHostPool under Pulumi mocks, scaling included."""

from __future__ import annotations

import re

import pytest

from components.model import catalog

SECRET = "aws:secretsmanager/secret:Secret"
PROFILE = "aws:iam/instanceProfile:InstanceProfile"
HOST_REGISTRATION = "pulumi-python:dynamic/cloudstack:ClusterHosts"   # one per cluster
CLUSTER_REGISTRATION = "pulumi-python:dynamic/cloudstack:Cluster"
SECRET_ENV = {
    "CSEC2_SECRET_DB_CLOUD": "management-db-cloud",
    "CSEC2_SECRET_CLOUDSTACK_KEYS": "management-cloudstack-keys",
    "CSEC2_SECRET_ADMIN": "management-admin",
    "CSEC2_SECRET_API_KEYS": "management-api-keys",
}


def profile_name(d, name: str) -> str:
    return d.get(PROFILE, f"{name}-profile").state["name"]


# --- ManagementServer ----------------------------------------------------------------------

def test_management_server_is_nitro_with_its_own_instance_role(dev):
    mgmt = dev.instance("management")
    facts = catalog.instance_facts(mgmt.inputs["instanceType"])
    assert facts is not None and facts.hypervisor == "nitro" and facts.nitro
    assert mgmt.inputs["iamInstanceProfile"] == profile_name(dev, "management")
    profile = dev.get(PROFILE, "management-profile")
    assert profile.inputs["role"] == dev.get("aws:iam/role:Role", "management-role").state["name"]


def test_management_boot_script_carries_its_overlay_address_and_the_secret_arns(dev):
    env = dev.boot_env(dev.instance("management"))
    overlay_ip = dev.outputs["managementServer"]["overlayIp"]
    assert overlay_ip == str(dev.settings.ip_plan().management_servers[0])
    assert env["CSEC2_OVERLAY_IP"] == overlay_ip
    assert env["OVERLAY_ADDRESS"] == f"{overlay_ip}/{dev.settings.overlay_cidr.prefixlen}"
    assert env["OVERLAY_ROLE"] == "member"
    assert env["OVERLAY_GATEWAY"] == dev.outputs["router"]["overlayIp"]
    # The deployment's own root (naming.parameter_root): unique per deployment.
    assert env["CSEC2_PREFIX"] == dev.outputs["deployment"]["parameterRoot"]
    assert re.fullmatch(r"/cloudstack-ec2/dev/[0-9a-f]{8}", env["CSEC2_PREFIX"])
    assert env["CSEC2_CLOUDSTACK_VERSION"] == dev.settings.cloudstack_version
    for key, secret_name in SECRET_ENV.items():
        arn = dev.get(SECRET, secret_name).state["arn"]
        assert arn.startswith("arn:aws:secretsmanager:")
        assert env[key] == arn, key


def test_boot_scripts_are_rendered_from_the_packaged_userdata(dev):
    from importlib.resources import files

    overlay_script = files("userdata").joinpath("overlay-network.sh").read_text()
    # A distinctive line of the shipped overlay script appears in every instance's script.
    marker = next(line for line in overlay_script.splitlines() if "force_igmp_version" in line)
    for inst in dev.instances():
        assert marker.strip() in dev.boot_script(inst), inst.name


# --- KvmHostPool ---------------------------------------------------------------------------

def test_host_count_metal_instances_each_at_its_stable_overlay_address(dev):
    hosts = dev.host_instances()
    assert [h.name for h in hosts] == ["kvm-host-0", "kvm-host-1", "kvm-host-2"]
    plan = dev.settings.ip_plan()
    for i, host in enumerate(hosts):
        facts = catalog.instance_facts(host.inputs["instanceType"])
        # Metal types report no hypervisor; all of them are Nitro systems.
        assert facts is not None and facts.bare_metal and facts.nitro, host.inputs["instanceType"]
        env = dev.boot_env(host)
        assert env["CSEC2_OVERLAY_IP"] == str(plan.hosts[i])
        assert env["OVERLAY_ADDRESS"] == f"{plan.hosts[i]}/{plan.overlay.prefixlen}"
        assert env["OVERLAY_GATEWAY"] == str(plan.router)
        assert host.inputs["tags"]["OverlayIp"] == str(plan.hosts[i])
        assert host.inputs["iamInstanceProfile"] == profile_name(dev, "kvm-host")
        assert dev.outputs["hosts"][str(i)]["overlayIp"] == str(plan.hosts[i])
        assert dev.outputs["hosts"][str(i)]["instanceId"] == host.id
    assert len({dev.boot_env(h)["CSEC2_OVERLAY_IP"] for h in hosts}) == 3


def _host_resources(d) -> dict[tuple[str, str], dict]:
    """(type, name) -> inputs of every custom resource."""
    return {(r.type, r.name): r.inputs for r in d.registrations if r.custom}


def _host_index(name: str) -> int | None:
    for prefix in ("kvm-host-", "registration-host-"):
        tail = name[len(prefix):] if name.startswith(prefix) else ""
        if tail.isdigit():
            return int(tail)
    return None


@pytest.fixture(scope="module")
def scaled(deploy):
    return {n: deploy(hostCount=n) for n in (3, 5, 2)}


@pytest.mark.parametrize("before,after", [(3, 5), (5, 2)])
def test_scaling_changes_only_the_added_or_removed_hosts(scaled, before, after):
    old, new = _host_resources(scaled[before]), _host_resources(scaled[after])
    kept = min(before, after)
    added_or_removed = {k for k in old.keys() ^ new.keys()}
    # Exactly the instances above the smaller count appear or disappear, nothing else
    # (hosts of one cluster share one registration resource).
    expected = {("aws:ec2/instance:Instance", f"kvm-host-{i}") for i in range(kept, max(before, after))}
    # ... with each one's status-check alarm.
    expected |= {("aws:cloudwatch/metricAlarm:MetricAlarm", f"alarms-kvm-host-{i}-status-check")
                 for i in range(kept, max(before, after))}
    assert added_or_removed == expected
    # Everything kept — hosts 0..kept-1 above all — has identical inputs, so Pulumi neither
    # replaces nor updates it (same user data, same overlay address); only the cluster's hosts
    # registration (its host list) and the dashboard (every instance's memory and disk) are
    # updated in place. The hosts' role policy does not change: one `host-ready/*` resource
    # covers any number of hosts.
    changed = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
    assert changed == [("aws:cloudwatch/dashboard:Dashboard", "alarms-dashboard"),
                       (HOST_REGISTRATION, "registration-hosts-0")], changed
    for i in range(kept):
        a = scaled[before].instance(f"kvm-host-{i}")
        b = scaled[after].instance(f"kvm-host-{i}")
        assert a.inputs["userDataBase64"] == b.inputs["userDataBase64"]
        assert a.inputs["tags"]["OverlayIp"] == b.inputs["tags"]["OverlayIp"]


def test_scaling_keeps_overlay_addresses_by_host_index(scaled):
    for n, d in scaled.items():
        assert sorted(d.outputs["hosts"], key=int) == [str(i) for i in range(n)]
        for i in range(n):
            assert d.outputs["hosts"][str(i)]["overlayIp"] == scaled[5].outputs["hosts"][str(i)]["overlayIp"]


def test_clusters_follow_hosts_per_cluster(deploy):
    d = deploy(hostCount=5, hostsPerCluster=2)
    clusters = sorted(d.of_type(CLUSTER_REGISTRATION), key=lambda r: r.name)
    assert [c.name for c in clusters] == ["registration-cluster-0", "registration-cluster-1", "registration-cluster-2"]
    by_name = {c.name: c for c in clusters}
    for c in range(3):
        reg = d.get(HOST_REGISTRATION, f"registration-hosts-{c}")
        assert reg.inputs["clusterid"] == by_name[f"registration-cluster-{c}"].id
        assert [h["ipaddress"] for h in reg.inputs["hosts"]] == \
            [d.outputs["hosts"][str(i)]["overlayIp"] for i in range(5) if i // 2 == c]
    for i in range(5):
        assert d.outputs["hosts"][str(i)]["cluster"] == i // 2


def test_host_registration_depends_on_its_own_instances(dev):
    # A scale-in deregisters the host (an update of its cluster's hosts resource) BEFORE
    # Pulumi deletes the instance: deletions of resources that left the program come last.
    reg = dev.get(HOST_REGISTRATION, "registration-hosts-0")
    for host in dev.host_instances():
        assert host.urn in reg.dependencies, f"registration-hosts-0 does not wait for {host.name}"
    assert [h["ipaddress"] for h in reg.inputs["hosts"]] == \
        [dev.outputs["hosts"][str(i)]["overlayIp"] for i in range(len(dev.host_instances()))]


@pytest.mark.parametrize("key,value", [("hostInstanceType", "c5.large"), ("hostInstanceType", "m4.large"),
                                       ("managementInstanceType", "m4.large"), ("routerInstanceType", "t2.medium")])
def test_program_refuses_non_nitro_or_non_metal_instance_types(deploy, key, value):
    from components.model.settings import SettingsError

    with pytest.raises(SettingsError) as err:
        deploy(**{key: value})
    assert key in str(err.value) and value in str(err.value)
