"""The example training stack (Pulumi.training.yaml): a complete cloud on nested-virtualization
hosts, planned offline as a user would, at a fraction of the metal dev stack's price."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def plan(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PULUMI_"))}
    env.update(AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
               AWS_EC2_METADATA_DISABLED="true", PATH=os.path.dirname(sys.executable) + ":/usr/bin:/bin")
    cli = Path(sys.executable).parent / "cloudstack-ec2"
    return subprocess.run([str(cli), "plan", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def training() -> str:
    result = plan("--stack", "training")
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def outputs() -> dict:
    found = {}
    for stack in ("training", "dev"):
        result = plan("--stack", stack, "--json")
        assert result.returncode == 0, result.stderr
        found[stack] = json.loads(result.stdout)["outputs"]
    return found


def test_training_costs_well_below_a_third_of_the_metal_dev_stack(outputs):
    training, dev = outputs["training"]["estimatedHourlyCostUsd"], outputs["dev"]["estimatedHourlyCostUsd"]
    assert training > 0 and dev > 0
    # "Well below a third": not even half of a third.
    assert training <= dev / 6, (training, dev)


def test_training_is_a_complete_cloud(outputs, training):
    out = outputs["training"]
    assert out["registered"] is True
    assert [h["instanceType"] for h in out["hosts"].values()] == ["c8i.2xlarge", "c8i.2xlarge"]
    assert "cluster training-cluster-0: hosts 0=10.100.0.10, 1=10.100.0.11" in training
    for component in ("Underlay", "MulticastDomain", "OverlayRouter", "ManagementServer", "KvmHostPool",
                      "RdsCloudDb", "EfsStorage", "CloudStackRegistration"):
        assert f"\n  {component} (" in training, component


def test_plan_shows_nested_virtualization_on_the_hosts_only(training):
    instances = [line for line in training.splitlines() if line.strip().startswith("Instance ")]
    hosts = [line for line in instances if "kvm-host-" in line]
    assert len(hosts) == 2 and all("nested virtualization: enabled" in line for line in hosts)
    assert not any("nested virtualization" in line for line in instances if line not in hosts)


def test_plan_shows_the_hosts_capacity_price_and_start_time(training):
    section = training.split("KVM host capacity\n", 1)[1].split("\nEstimated cost", 1)[0]
    assert "c8i.2xlarge    2      8          16        0.375          nested          1-2" in section
    assert "total: 2 hosts, 16 vCPU and 32 GiB in all, $0.75/hour" in section
    dev = plan("--stack", "dev").stdout.split("KVM host capacity\n", 1)[1].split("\nEstimated cost", 1)[0]
    assert "m5zn.metal     2      48         192       3.964          metal           10-20+" in dev


def test_training_prices_are_dated(training):
    assert "c8i.2xlarge: recorded 2026-11-30" in training
