"""The offline plan command, end to end, as a new user runs it: no AWS credentials, no Pulumi CLI."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.cli.commands import main

ROOT = Path(__file__).resolve().parents[2]


def console_script() -> str:
    """The `cloudstack-ec2` command that `pip install` put next to this Python."""
    path = Path(sys.executable).parent / "cloudstack-ec2"
    assert path.exists(), f"{path} missing: install the project (pip install -e .)"
    return str(path)


def offline_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PULUMI_"))}
    env.update(AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
               AWS_EC2_METADATA_DISABLED="true", PATH=os.path.dirname(sys.executable) + ":/usr/bin:/bin")
    return env


def plan(*args, cwd=ROOT):
    return subprocess.run([console_script(), "plan", *args], cwd=cwd, env=offline_env(),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def dev_plan():
    result = plan("--stack", "dev")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_no_pulumi_cli_and_no_credentials_needed():
    assert shutil.which("pulumi", path=offline_env()["PATH"]) is None


def test_plan_prints_the_ip_plan(dev_plan):
    for row in ("router (overlay gateway)        10.100.0.1", "management server 0             10.100.0.2",
                "KVM host 0 (cluster 0)          10.100.0.10", "KVM host 1 (cluster 0)          10.100.0.11",
                "pod reserved system range", "public range (virtual routers)",
                "zone DNS (VPC base + 2)         10.0.0.2",
                "system VMs' public range        10.100.192.1-10.100.192.8 (8 addresses: console proxy, "
                "secondary storage VM)"):
        assert row in dev_plan


def test_plan_lists_every_component_and_resource(dev_plan):
    for component in ("Underlay", "MulticastDomain", "OverlayRouter", "ManagementServer", "KvmHostPool",
                      "RdsCloudDb", "EfsStorage", "CloudStackRegistration"):
        assert f"\n  {component} (" in dev_plan, component
    import json
    listed = json.loads(plan("--stack", "dev", "--json").stdout)["resources"]
    for resource in listed:
        assert f" {resource['name']}" in dev_plan, resource["name"]
    assert f"total: {len(listed)} resources" in dev_plan


def test_plan_shows_key_properties(dev_plan):
    assert "src/dst check: False" in dev_plan  # the router
    assert "IMDS tokens: required" in dev_plan
    assert "multicast: enable" in dev_plan and "IGMPv2: enable" in dev_plan
    assert "family: mysql8.4" in dev_plan and "innodb_lock_wait_timeout=600" in dev_plan
    assert "throughput: elastic" in dev_plan


def test_plan_shows_the_registration(dev_plan):
    assert "zone zone1 (Advanced), DNS 10.0.0.2" in dev_plan
    assert "system VMs' public range 10.100.192.1-10.100.192.8 (forsystemvms" in dev_plan
    assert "consoleproxy.launch.max=1" in dev_plan
    assert "cluster zone1-cluster-0: hosts 0=10.100.0.10, 1=10.100.0.11" in dev_plan
    assert "storage.overprovisioning.factor=1" in dev_plan
    assert "nfs://<EFS>/zone1/primary" in dev_plan


def test_plan_shows_cost_with_assumptions(dev_plan):
    assert "KVM host m5zn.metal             2    7.928" in dev_plan
    assert "recorded 2026-11-01" in dev_plan
    assert "/hour, about $" in dev_plan


def test_plan_is_deterministic(dev_plan):
    assert plan("--stack", "dev").stdout == dev_plan


def test_set_overrides_a_key():
    out = plan("--stack", "dev", "--set", "hostCount=20").stdout
    assert "KVM host 19 (cluster 1)" in out
    assert "cluster zone1-cluster-1: hosts 16=10.100.0.26" in out


def write_stack(tmp_path: Path, name: str, config: dict) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))
    return tmp_path


def test_bad_stack_exits_non_zero_naming_every_key(tmp_path):
    bad = {
        "aws:region": "us-east-1",
        "cloudstack-ec2:overlayCidr": "10.0.0.0/20",
        "cloudstack-ec2:multicastGroup": "10.9.9.9",
        "cloudstack-ec2:routerInstanceType": "t2.medium",
        "cloudstack-ec2:hostInstanceType": "m6i.large",
        "cloudstack-ec2:hostCount": 0,
        "cloudstack-ec2:adminCidrs": ["0.0.0.0/0"],
        "cloudstack-ec2:overlayMtu": 9001,
        "cloudstack-ec2:vxlanId": 0,
        "cloudstack-ec2:efsThroughputMode": "bursting",
        "cloudstack-ec2:dbEngineVersion": "aurora-mysql",
    }
    result = plan("--stack", "bad", "--dir", str(write_stack(tmp_path, "bad", bad)))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for key in bad:
        if key.startswith("cloudstack-ec2:"):
            assert key in result.stderr, key
    assert result.stdout == ""


def test_missing_stack_file_is_a_clear_error(tmp_path):
    result = plan("--stack", "nope", "--dir", str(write_stack(tmp_path, "other", {})))
    assert result.returncode == 2 and "Pulumi.nope.yaml not found" in result.stderr


def test_in_process_main_matches_console_script(capsys):
    assert main(["plan", "--stack", "dev", "--dir", str(ROOT), "--json"]) == 0
    import json
    outputs = json.loads(capsys.readouterr().out)["outputs"]
    assert outputs["zoneName"] == "zone1" and outputs["router"]["overlayIp"] == "10.100.0.1"


@pytest.mark.parametrize("address,code", [("10.1.2.3", 0), ("203.0.113.9", 3)])
def test_admin_access(address, code):
    result = subprocess.run([console_script(), "admin-access", "--stack", "dev", address], cwd=ROOT,
                            env=offline_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == code, result.stdout + result.stderr


def test_admin_access_names_a_bad_address_instead_of_a_python_error(capsys):
    code = main(["admin-access", "--stack", "dev", "--dir", str(ROOT), "banana"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("cloudstack-ec2 admin-access: ADDRESS 'banana' is not an IPv4 address: give one like")
    assert "octets" not in err


def test_admin_access_names_the_stack_and_bad_admin_cidrs(tmp_path, capsys):
    assert main(["admin-access", "--stack", "prod", "--dir", str(write_stack(tmp_path, "dev", {})), "10.1.2.3"]) == 2
    assert "Pulumi.prod.yaml not found" in capsys.readouterr().err
    write_stack(tmp_path, "dev", {"cloudstack-ec2:adminCidrs": "10.0.0.0/8"})
    assert main(["admin-access", "--stack", "dev", "--dir", str(tmp_path), "10.1.2.3"]) == 2
    err = capsys.readouterr().err
    assert "cloudstack-ec2:adminCidrs = '10.0.0.0/8' [Pulumi.dev.yaml]: expected a list of CIDRs" in err


def test_admin_access_reports_a_malformed_cidr_as_the_plan_would(tmp_path, capsys):
    write_stack(tmp_path, "dev", {"cloudstack-ec2:adminCidrs": ["10.0.0.0/33"]})
    assert main(["admin-access", "--stack", "dev", "--dir", str(tmp_path), "10.1.2.3"]) == 2
    err = capsys.readouterr().err
    assert "cloudstack-ec2:adminCidrs [Pulumi.dev.yaml]: '10.0.0.0/33' is not an IPv4 CIDR (" in err
    assert "netmask" in err
    assert "is not in adminCidrs" not in err


def test_admin_access_flags_have_help():
    result = subprocess.run([console_script(), "admin-access", "--help"], cwd=ROOT, env=offline_env(),
                            capture_output=True, text=True, timeout=60)
    assert "reads Pulumi.<stack>.yaml" in result.stdout and "project directory" in result.stdout
