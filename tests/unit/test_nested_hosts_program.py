"""The program under Pulumi mocks with KVM hosts on nested-virtualization types: the CPU
option on every host of such a type and nowhere else, and one instance type per
CloudStack cluster when hostInstanceType changes under existing hosts."""

from __future__ import annotations

import pytest

from pathlib import Path

import yaml

from components.cli import offline
from components.resources.hosts import DEPLOYMENT_TAG, HOST_ROLE
from components.model.settings import NAMESPACE, SettingsError

REPO = Path(__file__).resolve().parents[2]
PROJECT = "cloudstack-ec2"

CLUSTER_REGISTRATION = "pulumi-python:dynamic/cloudstack:Cluster"
HOST_REGISTRATION = "pulumi-python:dynamic/cloudstack:ClusterHosts"   # one per cluster
SETTING_REGISTRATION = "pulumi-python:dynamic/cloudstack:GlobalSetting"


def nested(inst) -> str | None:
    return (inst.inputs.get("cpuOptions") or {}).get("nestedVirtualization")


def host_instance(index: int, instance_type: str, stack: str = "dev", state: str = "running",
                  deployment: str | None = "this"):
    """A KVM host instance an earlier `pulumi up` created, as DescribeInstances shows it
    (deployment: its Deployment tag; "this": the dev deployment's root; None: no tag, as
    hosts created before the tag existed)."""
    tags = {"Project": PROJECT, "Stack": stack, "Role": HOST_ROLE, "HostIndex": str(index)}
    if deployment is not None:
        tags[DEPLOYMENT_TAG] = ROOT if deployment == "this" else deployment
    return offline.ExistingInstance(id=f"i-{index:017x}", instance_type=instance_type, state=state, tags=tags)


#: conftest's Deployed (the tests cannot import a conftest by name); set by the fixture below.
Deployed = None
#: The parameter root the dev stack's first run recorded (its `deployment` output).
ROOT = ""


@pytest.fixture(scope="module", autouse=True)
def _deployed_class(dev):
    global Deployed, ROOT
    Deployed = type(dev)
    ROOT = dev.outputs["deployment"]["parameterRoot"]


def run(existing=(), stack: str = "dev", previous_root: str | None = "this", **overrides):
    """The dev stack's config with `overrides`, run offline in an account where `existing`
    runs, after an update that recorded `previous_root` ("this": ROOT; None: first run)."""
    config = dict(yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())["config"])
    for key, value in overrides.items():
        config[f"{NAMESPACE}:{key}"] = value
    from components.program import build

    root = ROOT if previous_root == "this" else previous_root
    result = offline.run_offline(build, config, project=PROJECT, stack=stack, region="us-east-1",
                                 subnet_cidrs={"cloudstack": str(config[f"{NAMESPACE}:cloudstackSubnetCidr"])},
                                 previous_outputs={"deployment": {"parameterRoot": root}} if root else None,
                                 existing_instances=existing)
    return Deployed(result, config)


@pytest.fixture(scope="module")
def c8i(_deployed_class):
    return run(hostInstanceType="c8i.4xlarge", hostCount=3)


def test_every_host_on_a_nested_type_launches_with_nested_virtualization(c8i):
    hosts = c8i.host_instances()
    assert [h.inputs["instanceType"] for h in hosts] == ["c8i.4xlarge"] * 3
    assert [nested(h) for h in hosts] == ["enabled"] * 3


def test_no_other_instance_gets_the_cpu_option(c8i):
    others = [i for i in c8i.instances() if not i.name.startswith("kvm-host-")]
    assert {i.name for i in others} == {"router", "management"}
    assert all("cpuOptions" not in i.inputs for i in others), [i.name for i in others]


def test_metal_hosts_get_no_cpu_option(dev):
    assert dev.host_instances() and all("cpuOptions" not in h.inputs for h in dev.host_instances())


def test_a_c8i_router_is_not_launched_with_nested_virtualization():
    d = run(routerInstanceType="c8i.xlarge", hostInstanceType="c8i.4xlarge", hostCount=1)
    assert "cpuOptions" not in d.instance("router").inputs
    assert nested(d.instance("kvm-host-0")) == "enabled"


def test_the_mocks_refuse_the_option_where_ec2_does():
    # The fake EC2 enforces AWS's rule, so the assertions above would catch a program
    # that set the option on every instance.
    with pytest.raises(Exception, match="nested virtualization is not supported for instance type c5.metal"):
        offline.OfflineMocks._check_cpu_options({"instanceType": "c5.metal",
                                                 "cpuOptions": {"nestedVirtualization": "enabled"}})
    offline.OfflineMocks._check_cpu_options({"instanceType": "c8i.4xlarge",
                                             "cpuOptions": {"nestedVirtualization": "enabled"}})


def test_a_virtual_type_without_the_feature_is_refused_before_anything_is_declared():
    with pytest.raises(SettingsError) as err:
        run(hostInstanceType="c7i.4xlarge")
    assert [p.key for p in err.value.problems] == ["hostInstanceType"]
    assert "c7i.4xlarge" in str(err.value) and "nested-virtualization" in str(err.value)


def test_one_type_keeps_the_old_cluster_rule(c8i):
    assert c8i.outputs["hosts"]["2"]["cluster"] == 0
    assert [c.name for c in c8i.of_type(CLUSTER_REGISTRATION)] == ["registration-cluster-0"]
    assert not any(r.name.endswith("migrate-vm-across-clusters") and r.inputs.get("value") == "false"
                   for r in c8i.of_type(SETTING_REGISTRATION))


# --- hostInstanceType changed under existing hosts ----------------------------------------

@pytest.fixture(scope="module")
def changed(_deployed_class):
    """Two c5.metal hosts exist; the user switched to c8i.4xlarge and asked for four hosts."""
    return run(existing=[host_instance(0, "m5zn.metal"), host_instance(1, "m5zn.metal")],
               hostInstanceType="c8i.4xlarge", hostCount=4)


def test_existing_hosts_keep_their_type_and_no_cpu_option(changed):
    hosts = changed.host_instances()
    assert [h.inputs["instanceType"] for h in hosts] == ["m5zn.metal", "m5zn.metal", "c8i.4xlarge", "c8i.4xlarge"]
    assert [nested(h) for h in hosts] == [None, None, "enabled", "enabled"]
    assert [changed.outputs["hosts"][str(i)]["instanceType"] for i in range(4)] == \
        ["m5zn.metal", "m5zn.metal", "c8i.4xlarge", "c8i.4xlarge"]


def test_existing_hosts_inputs_are_unchanged_by_the_type_change(changed, deploy):
    before = deploy(hostCount=2)  # the dev stack (m5zn.metal) as it was deployed
    for i in (0, 1):
        assert changed.instance(f"kvm-host-{i}").inputs == before.instance(f"kvm-host-{i}").inputs


def test_mixed_types_split_clusters(changed):
    clusters = {c.name: c for c in changed.of_type(CLUSTER_REGISTRATION)}
    assert sorted(clusters) == ["registration-cluster-0", "registration-cluster-1"]
    for i, cluster in enumerate([0, 0, 1, 1]):
        reg = changed.get(HOST_REGISTRATION, f"registration-hosts-{cluster}")
        assert reg.inputs["clusterid"] == clusters[f"registration-cluster-{cluster}"].id
        assert changed.outputs["hosts"][str(i)]["overlayIp"] in [h["ipaddress"] for h in reg.inputs["hosts"]]
        assert changed.outputs["hosts"][str(i)]["cluster"] == cluster
    assert changed.run.result.host_clusters == (0, 0, 1, 1)


def test_mixed_types_forbid_live_migration_across_clusters(changed):
    (setting,) = [r for r in changed.of_type(SETTING_REGISTRATION) if r.inputs.get("name") == "migrate.vm.across.clusters"]
    assert setting.inputs["value"] == "false"


def test_cost_counts_each_host_at_its_own_type(changed):
    hourly = changed.outputs["estimatedHourlyCostUsd"]
    from components.model import catalog

    two_metal_two_c8i = catalog.estimate(changed.settings, ["m5zn.metal"] * 2 + ["c8i.4xlarge"] * 2).hourly
    assert hourly == round(two_metal_two_c8i, 2)
    assert hourly != round(catalog.estimate(changed.settings).hourly, 2)


def test_terminated_or_foreign_instances_are_not_hosts():
    d = run(existing=[host_instance(0, "m5zn.metal", state="terminated"),
                      host_instance(1, "m5zn.metal", stack="other")],
            hostInstanceType="c8i.4xlarge", hostCount=2)
    assert [h.inputs["instanceType"] for h in d.host_instances()] == ["c8i.4xlarge"] * 2


def test_a_stopped_host_keeps_its_type():
    d = run(existing=[host_instance(0, "m5zn.metal", state="stopped")], hostInstanceType="c8i.4xlarge", hostCount=2)
    assert [h.inputs["instanceType"] for h in d.host_instances()] == ["m5zn.metal", "c8i.4xlarge"]


def test_two_instances_claiming_one_host_index_are_named():
    with pytest.raises(SettingsError) as err:
        run(existing=[host_instance(0, "m5zn.metal"),
                      offline.ExistingInstance("i-0stray", "c8i.4xlarge", {
                          "Project": PROJECT, "Stack": "dev", "Role": HOST_ROLE, "HostIndex": "0",
                          DEPLOYMENT_TAG: ROOT})],
            hostInstanceType="c8i.4xlarge", hostCount=1)
    assert "HostIndex=0" in str(err.value) and "i-0stray" in str(err.value)


def test_the_program_asks_aws_for_the_hosts_by_their_tags(changed):
    calls = [a for token, a in changed.run.invokes if token == "aws:ec2/getInstances:getInstances"]
    assert len(calls) == 1
    assert calls[0]["instanceTags"] == {"Project": PROJECT, "Stack": "dev", "Role": HOST_ROLE, DEPLOYMENT_TAG: ROOT}
    assert set(calls[0]["instanceStateNames"]) == {"pending", "running", "stopping", "stopped"}


def test_while_a_host_of_another_type_is_being_removed_vms_still_may_not_cross(_deployed_class):
    # Scale-in removing the last c8i host: the planned hosts are all metal, but the c8i host
    # still runs during this update; its VMs must not live-migrate to the metal cluster.
    d = run(existing=[host_instance(0, "m5zn.metal"), host_instance(1, "m5zn.metal"),
                      host_instance(2, "c8i.4xlarge")],
            hostInstanceType="c8i.4xlarge", hostCount=2)
    assert [h.inputs["instanceType"] for h in d.host_instances()] == ["m5zn.metal"] * 2
    (setting,) = [r for r in d.of_type(SETTING_REGISTRATION) if r.inputs.get("name") == "migrate.vm.across.clusters"]
    assert setting.inputs["value"] == "false"
    # Once only metal runs, cross-cluster migration is allowed again.
    after = run(existing=[host_instance(0, "m5zn.metal"), host_instance(1, "m5zn.metal")],
                hostInstanceType="c8i.4xlarge", hostCount=2)
    (setting,) = [r for r in after.of_type(SETTING_REGISTRATION)
                  if r.inputs.get("name") == "migrate.vm.across.clusters"]
    assert setting.inputs["value"] == "true"


def test_the_mocked_describe_instances_filters_as_the_data_source_does():
    # terraform-provider-aws aws_instances: instance_state_names defaults to running only;
    # every instance tag must match. The program's lookup relies on both.
    mocks = offline.OfflineMocks("us-east-1", existing_instances=[
        host_instance(0, "m5zn.metal"), host_instance(1, "m5zn.metal", state="stopped"),
        host_instance(2, "m5zn.metal", stack="other")])
    ids = lambda **a: [i.id for i in mocks._instances(a)]  # noqa: E731
    tags = {"Project": PROJECT, "Stack": "dev", "Role": HOST_ROLE}
    assert ids(instanceTags=tags) == [host_instance(0, "x").id]
    assert ids(instanceTags=tags, instanceStateNames=["running", "stopped"]) == \
        [host_instance(0, "x").id, host_instance(1, "x").id]
    assert len(ids(instanceStateNames=["running"])) == 2


def test_plan_report_shows_the_programs_clusters_and_each_hosts_type(changed):
    # The plan's report reads the program's own answer (existing hosts keep their type).
    from components.cli.commands import plan_report

    report = plan_report(changed.run, "dev", PROJECT, "us-east-1")
    assert report["summary"]["clusters"] == 2
    assert [h["cluster"] for h in report["ipPlan"]["hosts"]] == [0, 0, 1, 1]
    hosts = {line["item"]: line["quantity"] for line in report["cost"]["lines"] if line["item"].startswith("KVM host")}
    assert hosts == {"KVM host m5zn.metal": 2, "KVM host c8i.4xlarge": 2}
    # The vCPU quota counts each host at its own type: 2 x 48 + 2 x 16, router and management on top.
    (standard,) = [q for q in report["summary"]["vcpusByQuota"] if "2 x m5zn.metal (48)" in q["parts"]]
    assert "2 x c8i.4xlarge (16)" in standard["parts"]
    assert standard["vcpus"] == 2 * 48 + 2 * 16 + 2 + 4


# --- two deployments of one stack name ---------------------------------------------------

LEGACY_ROOT = "/cloudstack-ec2/dev"
OTHER_ROOT = "/cloudstack-ec2/dev/0badc0de"


def test_every_host_is_tagged_with_its_deployment(changed):
    assert {h.inputs["tags"][DEPLOYMENT_TAG] for h in changed.host_instances()} == {ROOT}
    assert ROOT.startswith("/cloudstack-ec2/dev/") and ROOT != LEGACY_ROOT


def test_another_deployments_hosts_of_the_same_stack_name_are_not_adopted():
    # Ours: host 0 (m5zn.metal). Another deployment's host 1 (c5.metal) and an untagged
    # (legacy) host 0 of another type: neither decides a type nor clashes with host 0.
    d = run(existing=[host_instance(0, "m5zn.metal"), host_instance(1, "c5.metal", deployment=OTHER_ROOT),
                      offline.ExistingInstance("i-0legacy", "c5.metal", {
                          "Project": PROJECT, "Stack": "dev", "Role": HOST_ROLE, "HostIndex": "0"})],
            hostInstanceType="c8i.4xlarge", hostCount=2)
    assert [h.inputs["instanceType"] for h in d.host_instances()] == ["m5zn.metal", "c8i.4xlarge"]


def test_a_legacy_stack_finds_its_untagged_hosts_and_tags_them():
    d = run(existing=[host_instance(0, "m5zn.metal", deployment=None),
                      host_instance(1, "m5zn.metal", deployment=LEGACY_ROOT),
                      host_instance(2, "c5.metal", deployment=OTHER_ROOT)],
            previous_root=LEGACY_ROOT, hostInstanceType="c8i.4xlarge", hostCount=3)
    assert [h.inputs["instanceType"] for h in d.host_instances()] == ["m5zn.metal", "m5zn.metal", "c8i.4xlarge"]
    assert {h.inputs["tags"][DEPLOYMENT_TAG] for h in d.host_instances()} == {LEGACY_ROOT}
    calls = [a for token, a in d.run.invokes if token == "aws:ec2/getInstances:getInstances"]
    assert [c["instanceTags"] for c in calls] == [{"Project": PROJECT, "Stack": "dev", "Role": HOST_ROLE}]


def test_the_first_run_of_a_deployment_looks_up_no_hosts():
    # Another deployment of the stack name runs; this one was never updated: all hosts new.
    d = run(existing=[host_instance(0, "m5zn.metal", deployment=OTHER_ROOT),
                      host_instance(1, "m5zn.metal", deployment=None)],
            previous_root=None, hostInstanceType="c8i.4xlarge", hostCount=2)
    assert [h.inputs["instanceType"] for h in d.host_instances()] == ["c8i.4xlarge"] * 2
    assert not [a for token, a in d.run.invokes if token == "aws:ec2/getInstances:getInstances"]
