"""A stack output with a ready cloudmonkey (cmk) profile: the API URL and the
command that fetches the keys from Secrets Manager, never the keys themselves."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from components.model.cloudmonkey import cmk_profile


def test_output_names_url_and_secret_but_holds_no_secret(dev):
    profile = dev.outputs["cloudmonkey"]
    assert profile["profile"] == "cloudstack-ec2-dev"
    assert profile["url"] == dev.outputs["apiEndpoint"]
    assert dev.outputs["secretArns"]["api_keys"] in profile["setup"]
    # The keys are read from the secret when the command runs: the profile names it only.
    assert not any(dev.is_secret(v) for v in profile.values())


def test_setup_command_configures_cmk_from_the_secret(tmp_path):
    if shutil.which("jq") is None:
        pytest.fail("jq missing: it is a prerequisite of the command (README)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Stand-ins for the AWS CLI and cmk that record what they were asked.
    (bin_dir / "aws").write_text(f"#!/bin/sh\necho \"$*\" > {tmp_path}/aws.args\n"
                                 "echo '{\"apikey\": \"KEY-1\", \"secretkey\": \"SECRET-2\"}'\n")
    (bin_dir / "cmk").write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/cmk.calls\n")
    for tool in ("aws", "cmk"):
        (bin_dir / tool).chmod(0o755)
    profile = cmk_profile("dev", "http://198.51.100.7:8080/client/api",
                          "arn:aws:secretsmanager:us-east-1:123456789012:secret:x/api-keys-Ab12Cd", "us-east-1")
    subprocess.run(["bash", "-c", profile["setup"]], check=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert "secretsmanager get-secret-value --region us-east-1 --secret-id arn:aws:secretsmanager:" \
           "us-east-1:123456789012:secret:x/api-keys-Ab12Cd --query SecretString --output text" in \
           (tmp_path / "aws.args").read_text()
    assert (tmp_path / "cmk.calls").read_text().splitlines() == [
        "set profile cloudstack-ec2-dev", "set url http://198.51.100.7:8080/client/api",
        "set apikey KEY-1", "set secretkey SECRET-2", "sync"]
    assert "KEY-1" not in json.dumps(profile)
