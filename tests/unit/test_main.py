"""`__main__.py` (what `pulumi up` runs) exports the program's outputs, or stops cleanly on bad settings."""

import runpy
from pathlib import Path

import pulumi
import pytest
import yaml

from components.cli import offline

ROOT = Path(__file__).resolve().parents[2]


def dev_config():
    return dict(yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"])


class _Exports:
    def __init__(self):
        self.outputs = {}


def run_main(config):
    exported = {}
    original = pulumi.export

    def export(name, value):
        exported[name] = value

    def program():
        pulumi.export = export
        try:
            runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        finally:
            pulumi.export = original
        result = _Exports()
        result.outputs = dict(exported)
        return result

    return offline.run_offline(program, config, project="cloudstack-ec2", stack="dev", region="us-east-1")


def test_main_exports_every_output():
    run = run_main(dev_config())
    for key in ("uiUrl", "apiEndpoint", "zoneName", "router", "managementServer", "hosts", "secretArns",
                "estimatedHourlyCostUsd"):
        assert key in run.outputs, key
    assert run.outputs["zoneName"] == "zone1"


def test_bad_settings_stop_with_a_clean_error_before_any_resource():
    config = {**dev_config(), "cloudstack-ec2:overlayMtu": 9001, "cloudstack-ec2:vxlanId": 0}
    with pytest.raises(pulumi.RunError) as err:
        run_main(config)
    assert "overlayMtu" in str(err.value) and "vxlanId" in str(err.value)
