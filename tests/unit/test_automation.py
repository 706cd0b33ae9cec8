"""Stacks driven through the Automation API, and README's embedding example.

The suite runs without the Pulumi CLI (scripts/test does not install it), so these run
the code path as far as it goes without it: the clear error when it is missing, and (with a stand-in `pulumi` on PATH
that only records how it was called) the workspace the Automation API hands the CLI."""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from components.cli import automation
from components.cli.automation import PulumiCliMissing, workspace_env

from test_cli import ROOT, console_script, offline_env

README = (ROOT / "README.md").read_text()


def embedding_example() -> str:
    section = README[README.index("## Embedding with the Automation API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def recording_cli(tmp_path: Path) -> Path:
    """A `pulumi` stand-in: answers `version`, is logged in nowhere, records every call (cwd, argv, env), and
    fails what only the real CLI can do (preview/up/...), as an engine error would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s|%s|%s|%s|%s\\n" "$PWD" "$*" "$PYTHONPATH" "$PULUMI_PYTHON_CMD" "$PULUMI_BACKEND_URL" >> {tmp_path}/calls\n'
        'for a in "$@"; do case "$a" in\n'
        "  version) echo v3.200.0; exit 0 ;;\n"
        "  whoami) exit 1 ;;\n"  # not logged in to any backend
        "  preview|up|refresh|destroy) echo \"error: the stand-in cannot $a\" >&2; exit 1 ;;\n"
        "esac; done\nexit 0\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_without_the_cli_the_command_says_so_in_one_line():
    result = subprocess.run([console_script(), "preview", "--stack", "dev"], cwd=ROOT, env=offline_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "the Pulumi CLI is not installed" in result.stderr and "get.pulumi.com" in result.stderr


def test_status_and_rotate_keys_without_the_cli_say_so_in_one_line():
    for command in ("status", "rotate-keys"):
        result = subprocess.run([console_script(), command, "--stack", "dev"], cwd=ROOT, env=offline_env(),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(f"cloudstack-ec2 {command}: the Pulumi CLI is not installed")
        assert "get.pulumi.com" in result.stderr


def test_status_and_rotate_keys_help_say_they_read_the_outputs_through_the_cli(capsys):
    from components.cli.commands import build_parser

    for command in ("status", "rotate-keys"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "read through the Pulumi CLI and the stack's backend" in text, text
        assert "PULUMI_CONFIG_PASSPHRASE" in text and "or the Pulumi CLI is missing" in text


def test_a_missing_stack_is_named_before_the_missing_cli(tmp_path):
    # No Pulumi CLI on PATH either: the stack name is the mistake to hear about first.
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    for command in ("preview", "destroy"):
        result = subprocess.run([console_script(), command, "--stack", "prod", "--dir", str(tmp_path)], cwd=tmp_path,
                                env=offline_env(), capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert "Pulumi.prod.yaml not found" in result.stderr and "the stacks here are dev" in result.stderr
        assert "Pulumi CLI" not in result.stderr and "--yes" not in result.stderr
    assert not (tmp_path / ".pulumi-state").exists()  # nothing was set up for a stack that does not exist


def test_up_and_destroy_need_yes():
    result = subprocess.run([console_script(), "destroy", "--stack", "dev"], cwd=ROOT, env=offline_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "add --yes" in result.stderr


def test_readme_example_without_the_cli_raises_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + ":/usr/bin:/bin")
    with pytest.raises(PulumiCliMissing, match="Pulumi CLI is not installed.*get.pulumi.com"):
        exec(compile(embedding_example(), "README.md", "exec"), {})


def test_readme_example_hands_the_cli_the_project_and_the_providers_interpreter(tmp_path, monkeypatch):
    from pulumi.automation import errors

    monkeypatch.setenv("PATH", f"{recording_cli(tmp_path)}:{os.path.dirname(sys.executable)}:/usr/bin:/bin")
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}/state")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test only")
    with pytest.raises(errors.CommandError, match="stand-in cannot up"):
        exec(compile(embedding_example(), "README.md", "exec"), {})
    calls = [line.split("|") for line in (tmp_path / "calls").read_text().splitlines()]
    up = next(c for c in calls if " up " in f" {c[1]} ")
    cwd, _, pythonpath, python_cmd, backend = up
    assert Path(cwd) == ROOT  # work_dir: Pulumi.yaml and Pulumi.dev.yaml are the CLI's
    assert str(ROOT) in pythonpath.split(os.pathsep) and python_cmd == sys.executable
    assert backend == f"file://{tmp_path}/state"
    assert any("config set" in c[1] and "cloudstack-ec2:hostCount" in c[1] for c in calls)


def test_workspace_follows_scripts_deploy_conventions(tmp_path):
    home = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    env = workspace_env(tmp_path, environ={"PYTHONPATH": "/elsewhere", **home}, logged_in=lambda: False)
    assert env["PULUMI_BACKEND_URL"] == f"file://{tmp_path.resolve()}/.pulumi-state"
    passphrase = Path(env["PULUMI_CONFIG_PASSPHRASE_FILE"])
    # Outside the project directory: a copy of the directory holds the state, not its key.
    assert passphrase == tmp_path / "config" / "cloudstack-ec2" / "passphrase"
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600 and len(passphrase.read_text().strip()) >= 32
    assert not (tmp_path / ".pulumi-state" / "passphrase").exists()
    assert env["PYTHONPATH"] == f"{tmp_path.resolve()}{os.pathsep}/elsewhere"
    again = workspace_env(tmp_path, environ=home, logged_in=lambda: False)
    assert Path(again["PULUMI_CONFIG_PASSPHRASE_FILE"]).read_text() == passphrase.read_text()  # never replaced
    chosen = workspace_env(tmp_path, environ={"PULUMI_BACKEND_URL": "s3://b/p", "PULUMI_CONFIG_PASSPHRASE": "x"},
                           logged_in=lambda: pytest.fail("whoami asked despite PULUMI_BACKEND_URL"))
    assert "PULUMI_BACKEND_URL" not in chosen and "PULUMI_CONFIG_PASSPHRASE_FILE" not in chosen
    assert "PULUMI_BACKEND_URL" not in workspace_env(tmp_path, environ=home, logged_in=lambda: True)


def test_a_passphrase_an_earlier_version_kept_in_the_project_is_still_used(tmp_path):
    legacy = tmp_path / ".pulumi-state" / "passphrase"
    legacy.parent.mkdir()
    legacy.write_text("old passphrase\n")
    env = workspace_env(tmp_path, environ={"HOME": str(tmp_path / "home")}, logged_in=lambda: False)
    assert Path(env["PULUMI_CONFIG_PASSPHRASE_FILE"]) == legacy.resolve()
    assert not (tmp_path / "home").exists()


def test_preview_streams_and_reports_a_cli_failure_in_one_line(tmp_path):
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    env = {**offline_env(), "PATH": f"{recording_cli(tmp_path)}:{offline_env()['PATH']}",
           "PULUMI_CONFIG_PASSPHRASE": "test only"}
    result = subprocess.run([console_script(), "preview", "--stack", "dev", "--dir", str(tmp_path)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip() == "cloudstack-ec2 preview: pulumi failed: error: the stand-in cannot preview"
    assert (tmp_path / ".pulumi-state" / "passphrase").exists() is False  # PULUMI_CONFIG_PASSPHRASE was set
    assert f"file://{tmp_path}/.pulumi-state" in (tmp_path / "calls").read_text()  # not logged in: local backend
