"""A plan a reader can follow, JSON a machine can, and the budget gate (--max-hourly-usd)."""

import json
import subprocess

import pytest

from components.cli.commands import JSON_SCHEMA_VERSION, route_text, rule_text
from components.model.quotas import quota_of

from planrun import cli
from test_cli import ROOT, console_script, offline_env

STANDARD = "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"


@pytest.fixture
def run(capsys):
    return lambda *args: cli(capsys, *args)


@pytest.fixture
def dev_json(run):
    result = run("plan", "--stack", "dev", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("rule,text", [
    ({"protocol": "2", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/32"]}, "IGMP from 0.0.0.0/32"),
    ({"protocol": "icmp", "fromPort": 3.0, "toPort": 4.0, "cidrBlocks": ["0.0.0.0/0"]}, "ICMP type 3 code 4 from 0.0.0.0/0"),
    ({"protocol": "icmp", "fromPort": -1, "toPort": -1, "cidrBlocks": ["10.0.0.0/8"]}, "ICMP from 10.0.0.0/8"),
    ({"protocol": "tcp", "fromPort": 5900, "toPort": 6100, "securityGroups": ["sg-1"]}, "TCP 5900-6100 from group sg-1"),
    ({"protocol": "udp", "fromPort": 4789.0, "toPort": 4789.0, "self": True}, "UDP 4789 from this group"),
    ({"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["10.0.0.0/16"]}, "all traffic from 10.0.0.0/16"),
])
def test_rules_read_as_a_person_says_them(rule, text):
    assert rule_text(rule) == text


def test_route_targets_are_named():
    assert route_text({"destinationCidrBlock": "0.0.0.0/0", "gatewayId": "igw-1"}) == "0.0.0.0/0 -> gateway igw-1"
    assert route_text({"cidrBlock": "10.100.0.0/16", "networkInterfaceId": "eni-1"}) == "10.100.0.0/16 -> ENI eni-1"


def test_quota_families():
    assert quota_of("m5zn.metal") == quota_of("c5n.large") == quota_of("c8i.metal-48xl") == STANDARD
    assert quota_of("inf2.xlarge") == "Running On-Demand Inf instances"
    assert quota_of("g5.xlarge") == quota_of("vt1.3xlarge") == "Running On-Demand G and VT instances"
    assert quota_of("mac1.metal") is None


def test_summary_comes_first_and_counts_right(dev_json, run):
    out = run("plan", "--stack", "dev").stdout
    assert out.index("Summary") < out.index("IP plan") < out.index("Resources per component")
    summary = out[out.index("Summary"):out.index("IP plan")]
    components = {r["component"] for r in dev_json["resources"]} - {"stack"}
    assert {"Underlay", "MulticastDomain", "OverlayRouter", "ManagementServer", "KvmHostPool", "RdsCloudDb",
            "EfsStorage", "CloudStackRegistration"} <= components
    top = sum(1 for r in dev_json["resources"] if r["component"] == "stack")
    assert f"resources:     {len(dev_json['resources'])} in {len(components)} components" + (
        f" and {top} of the stack itself" if top else "") in summary
    assert "KVM hosts:     2 x m5zn.metal in 1 cluster(s) of at most 16" in summary
    # router c5n.large 2 + management m6i.xlarge 4 + 2 x m5zn.metal 48 = 102
    assert f'vCPU quota:    102 vCPUs of "{STANDARD}"' in summary
    assert f"cost:          ${dev_json['summary']['hourlyUsd']:.2f}/hour" in summary
    assert "host limit: 98 (dedicated subnet 245, overlay 16372, multicast group 98); multicast group decides" in summary


def test_each_warning_once_and_only_on_stdout(run):
    result = run("plan", "--stack", "dev", "--set", "dbEngineVersion=8.0", "--set", "cloudstackVersion=4.20")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("dbEngineVersion 8.0: RDS MySQL 8.0 left standard support") == 1
    assert result.stderr == ""


def test_json_is_complete(dev_json):
    assert dev_json["schemaVersion"] == JSON_SCHEMA_VERSION
    assert {"summary", "warnings", "ipPlan", "resources", "registration", "cost", "outputs"} <= set(dev_json)
    assert dev_json["ipPlan"]["router"] == "10.100.0.1"
    assert [h["overlayIp"] for h in dev_json["ipPlan"]["hosts"]] == ["10.100.0.10", "10.100.0.11"]
    assert dev_json["registration"]["zone"]["name"] == "zone1"
    lines = dev_json["cost"]["lines"]
    assert any(l["item"] == "KVM host m5zn.metal" and l["quantity"] == 2 for l in lines)
    assert round(sum(l["hourlyUsd"] for l in lines), 2) == round(dev_json["cost"]["hourlyUsd"], 2)
    sg = next(r for r in dev_json["resources"] if r["name"] == "underlay-member-sg")
    assert "IGMP from 0.0.0.0/32" in sg["properties"]["ingress"]


def test_version():
    result = subprocess.run([console_script(), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("cloudstack-ec2 0.")


def test_closed_pipe_is_not_a_traceback():
    # More than a pipe's 64 KiB buffer, so the writer must hit the closed pipe.
    proc = subprocess.Popen([console_script(), "plan", "--stack", "dev", "--set", "hostCount=98", "--json"], cwd=ROOT,
                            env=offline_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert first.startswith(b"{")
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def test_budget_gate(dev_json, run):
    hourly = dev_json["summary"]["hourlyUsd"]
    assert run("plan", "--stack", "dev", "--json", "--max-hourly-usd", str(hourly + 1)).returncode == 0
    over = run("plan", "--stack", "dev", "--json", "--max-hourly-usd", str(hourly - 1))
    assert over.returncode == 4 and "above --max-hourly-usd" in over.stderr
    unknown = run("plan", "--stack", "dev", "--set", "hostInstanceType=c8i.metal-48xl", "--max-hourly-usd", "1000")
    assert unknown.returncode == 4 and "no price for KVM host c8i.metal-48xl" in unknown.stderr


def test_json_of_a_bad_stack_lists_the_problems(run):
    result = run("plan", "--stack", "dev", "--json", "--set", "hostCount=x")
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["schemaVersion"] == JSON_SCHEMA_VERSION
    assert doc["problems"] == [{"key": "cloudstack-ec2:hostCount", "value": "x", "message": "expected an integer",
                                "from": "--set hostCount=x"}]
    assert "cloudstack-ec2:hostCount = 'x'" in result.stderr
