"""`plan --previous`: the plan of a later run of a deployed stack is the update `up` makes.

`up` asks AWS for the deployment's KVM host instances (resources.hosts.existing_host_types)
and keeps each one's instance type; `plan --previous FILE` learns them from the outputs of
the last update (their `hosts` output). The same previous state goes through both paths
here: the program, with DescribeInstances answering with the instances the first run
declared, and the plan command, with those instances' outputs; types, clusters, the
cross-cluster migration setting and the cost must agree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from components.cli import commands as cli
from components.cli import offline
from components.model import catalog
from components.model.settings import NAMESPACE

ROOT = Path(__file__).resolve().parents[2]
SETTING = "pulumi-python:dynamic/cloudstack:GlobalSetting"
CHANGE = {"hostInstanceType": "c8i.4xlarge", "hostCount": 4}


@pytest.fixture(scope="module")
def deployed(deploy):
    """The dev stack as deployed: 2 x m5zn.metal."""
    return deploy(hostCount=2)


@pytest.fixture(scope="module")
def up(deployed):
    """What `up` does next: the program, with AWS answering with the two metal hosts as the
    first run tagged them."""
    from components.program import build

    config = dict(deployed.config)
    config.update({f"{NAMESPACE}:{k}": v for k, v in CHANGE.items()})
    in_aws = [offline.ExistingInstance(id=h.id, instance_type=h.inputs["instanceType"], tags=h.inputs["tags"])
              for h in deployed.host_instances()]
    return offline.run_offline(build, config, project="cloudstack-ec2", stack="dev", region="us-east-1",
                               subnet_cidrs={"cloudstack": str(config[f"{NAMESPACE}:cloudstackSubnetCidr"])},
                               previous_outputs=deployed.outputs, existing_instances=in_aws)


def project(tmp_path: Path) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def plan_json(tmp_path: Path, outputs: dict, capsys, *extra: str) -> tuple[int, dict, str]:
    previous = tmp_path / "outputs.json"
    previous.write_text(json.dumps(outputs, default=str))
    sets = [a for k, v in CHANGE.items() for a in ("--set", f"{k}={v}")]
    code = cli.main(["plan", "--dir", str(project(tmp_path)), "--stack", "dev", "--previous", str(previous),
                     "--json", *sets, *extra])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def migration(global_settings) -> str:
    (value,) = [s["value"] for s in global_settings if s["name"] == "migrate.vm.across.clusters"]
    return value


def test_plan_previous_models_what_up_does_with_existing_hosts(up, deployed, tmp_path, capsys):
    code, report, err = plan_json(tmp_path, deployed.outputs, capsys)
    assert code == 0, err
    planned_types = [report["outputs"]["hosts"][str(i)]["instanceType"] for i in range(4)]
    up_types = [up.outputs["hosts"][str(i)]["instanceType"] for i in range(4)]
    assert planned_types == up_types == ["m5zn.metal", "m5zn.metal", "c8i.4xlarge", "c8i.4xlarge"]
    assert [h["cluster"] for h in report["ipPlan"]["hosts"]] == list(up.result.host_clusters) == [0, 0, 1, 1]
    assert report["summary"]["clusters"] == 2
    (setting,) = [r for r in up.of_type(SETTING) if r.inputs["name"] == "migrate.vm.across.clusters"]
    assert migration(report["registration"]["global_settings"]) == setting.inputs["value"] == "false"
    assert report["summary"]["hourlyUsd"] == up.outputs["estimatedHourlyCostUsd"]
    assert report["summary"]["hourlyUsd"] > round(catalog.estimate(up.result.settings).hourly, 2)  # not 4 x c8i
    assert report["summary"]["hostTypes"] == [{"instanceType": "m5zn.metal", "hosts": 2},
                                              {"instanceType": "c8i.4xlarge", "hosts": 2}]


def test_the_text_plan_names_both_types(deployed, tmp_path, capsys):
    previous = tmp_path / "outputs.json"
    previous.write_text(json.dumps(deployed.outputs, default=str))
    sets = [a for k, v in CHANGE.items() for a in ("--set", f"{k}={v}")]
    assert cli.main(["plan", "--dir", str(project(tmp_path)), "--previous", str(previous), *sets]) == 0
    text = capsys.readouterr().out
    assert "KVM hosts:     2 x m5zn.metal + 2 x c8i.4xlarge in 2 cluster(s)" in text
    assert "migrate.vm.across.clusters=false" in text


def test_outputs_without_the_hosts_are_refused_naming_what_is_needed(deployed, tmp_path, capsys):
    partial = {k: v for k, v in deployed.outputs.items() if k != "hosts"}
    code, doc, err = plan_json(tmp_path, partial, capsys)
    assert code == 2
    assert doc["error"]["kind"] == "previous-outputs" and "`hosts`" in doc["error"]["message"]
    assert "pulumi stack output --json" in err and "resources" not in doc


def test_a_host_without_its_type_is_refused_not_guessed(deployed, tmp_path, capsys):
    older = json.loads(json.dumps(deployed.outputs, default=str))
    del older["hosts"]["1"]["instanceType"]
    code, doc, err = plan_json(tmp_path, older, capsys)
    assert code == 2 and doc["schemaVersion"] == cli.JSON_SCHEMA_VERSION
    message = doc["error"]["message"]
    assert "hosts.1" in message and "instanceType" in message
    assert older["hosts"]["1"]["instanceId"] in message  # where to look it up


def refused_previous(tmp_path: Path, outputs: dict, capsys) -> str:
    code, doc, err = plan_json(tmp_path, outputs, capsys)
    assert code == 2 and doc["error"]["kind"] == "previous-outputs" and "resources" not in doc, err
    message = doc["error"]["message"]
    assert "pulumi stack output --json" in message and "cloudstack-ec2 outputs --stack" in message
    return message


def test_no_outputs_are_refused_not_planned_as_a_first_run(tmp_path, capsys):
    assert "holds no outputs" in refused_previous(tmp_path, {}, capsys)


def test_the_plans_own_json_is_refused_as_previous_outputs(tmp_path, capsys):
    assert cli.main(["plan", "--dir", str(project(tmp_path)), "--stack", "dev", "--json"]) == 0
    plan_output = json.loads(capsys.readouterr().out)
    assert plan_output["outputs"]["hosts"]  # it has outputs, but planned ones
    assert "is a plan's --json output" in refused_previous(tmp_path, plan_output, capsys)


def test_outputs_of_no_deployment_are_refused_naming_what_was_found(deployed, tmp_path, capsys):
    hosts_only = {"hosts": json.loads(json.dumps(deployed.outputs["hosts"], default=str))}
    assert "has no `deployment` output (found: hosts)" in refused_previous(tmp_path, hosts_only, capsys)


def test_the_text_plan_refuses_them_in_one_line(tmp_path, capsys):
    previous = tmp_path / "outputs.json"
    previous.write_text("{}")
    assert cli.main(["plan", "--dir", str(project(tmp_path)), "--previous", str(previous)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"--previous {previous}: holds no outputs" in err


def plan_after(tmp_path: Path, outputs: dict, capsys, *sets: str) -> tuple[int, dict, str]:
    """The --json plan of `sets` (KEY=VALUE) on the stack whose outputs are `outputs`."""
    previous = tmp_path / "outputs.json"
    previous.write_text(json.dumps(outputs, default=str))
    code = cli.main(["plan", "--dir", str(project(tmp_path)), "--stack", "dev", "--previous", str(previous),
                     "--json", *[a for s in sets for a in ("--set", s)]])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_a_chosen_once_change_is_refused_before_anything_is_planned(deployed, tmp_path, capsys):
    code, doc, err = plan_after(tmp_path, deployed.outputs, capsys, "zoneName=z2", "hostCount=2")
    assert code == 2 and "resources" not in doc, err
    assert "zoneName" in err and "is zone1 in the deployed stack" in err and "new stack" in err


def test_one_management_server_left_is_told_the_load_balancer_goes_away(deploy, tmp_path, capsys):
    two = deploy(managementServerCount=2, hostCount=2)
    assert "loadBalancer" in two.outputs
    code, doc, err = plan_after(tmp_path, two.outputs, capsys, "managementServerCount=1", "hostCount=2")
    assert code == 0, err
    (warning,) = [w for w in doc["warnings"] if "load balancer goes away" in w]
    assert "http://<the router's Elastic IP>:8080" in warning and "uiLoadBalancer: true" in warning
    code, doc, err = plan_after(tmp_path, two.outputs, capsys, "managementServerCount=1", "hostCount=2",
                                "uiLoadBalancer=true")
    assert code == 0 and not [w for w in doc["warnings"] if "goes away" in w], err


def test_fewer_hosts_name_the_hosts_that_leave(deploy, tmp_path, capsys):
    three = deploy(hostCount=3)
    code, doc, err = plan_after(tmp_path, three.outputs, capsys, "hostCount=1")
    assert code == 0, err
    assert [w for w in doc["warnings"] if w.startswith("hostCount")] == [
        "hostCount 1 removes kvm-host-1, kvm-host-2: the registration puts each into maintenance (its VMs "
        "live-migrate to the other hosts) before its instance is deleted"]
