"""A stack output with a ready cloudmonkey (cmk) profile for the humans: the API URL and
the command that signs cmk in as the admin with the admin secret's password, which never
appears in the output nor on any command line; the registration's keys are not used."""

import json
import os
import shutil
import stat
import subprocess

import pytest

from components.model.cloudmonkey import cmk_profile

ADMIN_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:x/admin-Ab12Cd"
URL = "http://198.51.100.7:8080/client/api"


def test_output_names_url_and_the_admin_secret_but_holds_no_secret(dev):
    profile = dev.outputs["cloudmonkey"]
    assert profile["profile"] == "cloudstack-ec2-dev"
    assert profile["url"] == dev.outputs["apiEndpoint"]
    assert dev.outputs["secretArns"]["admin"] in profile["setup"]
    # The registration's keys are its own: the humans' profile never reads them.
    assert dev.outputs["secretArns"]["api_keys"] not in profile["setup"]
    # The password is read from the secret when the command runs: the profile names it only.
    assert not any(dev.is_secret(v) for v in profile.values())


def run_setup(tmp_path, profile):
    """Runs `setup` with stand-ins for the AWS CLI and cmk that record their arguments
    (every process's argv, as `ps` would show them, goes to argv.log)."""
    if shutil.which("jq") is None:
        pytest.fail("jq missing: it is a prerequisite of the command (README)")
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    home.mkdir()
    log = tmp_path / "argv.log"
    (bin_dir / "aws").write_text(f"#!/bin/sh\necho \"aws $*\" >> {log}\n"
                                 "echo '{\"username\": \"admin\", \"password\": \"Pw-SECRET-42\"}'\n")
    (bin_dir / "cmk").write_text(f"#!/bin/sh\necho \"cmk $*\" >> {log}\n")
    # jq and cat as wrappers that log their arguments, then run the real tool.
    for tool in ("jq", "cat", "mkdir"):
        real = shutil.which(tool)
        (bin_dir / tool).write_text(f"#!/bin/sh\necho \"{tool} $*\" >> {log}\nexec {real} \"$@\"\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    subprocess.run(["bash", "-c", profile["setup"]], check=True,
                   env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home)})
    return home, log.read_text()


def test_setup_writes_a_private_profile_without_a_secret_on_any_command_line(tmp_path):
    profile = cmk_profile("dev", URL, ADMIN_ARN, "us-east-1")
    home, argv = run_setup(tmp_path, profile)
    assert f"aws secretsmanager get-secret-value --region us-east-1 --secret-id {ADMIN_ARN} " \
           "--query SecretString --output text" in argv
    assert "Pw-SECRET-42" not in argv, "the password passed through a process's arguments"
    config = home / ".cmk" / "cloudstack-ec2-dev.config"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / ".cmk").stat().st_mode) == 0o700
    lines = config.read_text().splitlines()
    # cmk's layout (config/config.go): core keys first, then the profile's section.
    assert "profile = cloudstack-ec2-dev" in lines[:lines.index("[cloudstack-ec2-dev]")]
    section = lines[lines.index("[cloudstack-ec2-dev]") + 1:]
    assert {"url = " + URL, "username = admin", "password = Pw-SECRET-42", "domain = /", "apikey =",
            "secretkey ="} <= set(section)
    assert argv.splitlines()[-1] == f"cmk -c {config} sync"
    assert profile["cmk"] == 'cmk -c "$HOME/.cmk/cloudstack-ec2-dev.config"'
    assert "Pw-SECRET-42" not in json.dumps(profile)


def test_setup_again_replaces_the_profile_and_keeps_it_private(tmp_path):
    profile = cmk_profile("dev", URL, ADMIN_ARN, "us-east-1")
    home, _ = run_setup(tmp_path, profile)
    config = home / ".cmk" / "cloudstack-ec2-dev.config"
    config.write_text("stale\n")
    os.chmod(config, 0o644)
    subprocess.run(["bash", "-c", profile["setup"]], check=True,
                   env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(home)})
    assert "stale" not in config.read_text() and "password = Pw-SECRET-42" in config.read_text()
    # `>` keeps an existing file's mode: the setup must not leave it readable to others.
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
