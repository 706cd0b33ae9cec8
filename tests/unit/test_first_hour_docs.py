"""README and Pulumi.dev.yaml say what a first deploy needs and costs, from the
plan's own arithmetic, and their commands reach scripts/deploy's local backend."""

import json
import re
from pathlib import Path

import pytest

from planrun import ROOT, cli

README = (ROOT / "README.md").read_text()
DEV_STACK = (ROOT / "Pulumi.dev.yaml").read_text()


def plan_summary(capsys, stack: str) -> dict:
    result = cli(capsys, "plan", "--stack", stack, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["summary"]


@pytest.fixture
def summary(capsys):
    return plan_summary(capsys, "dev")


def first_screen() -> str:
    """What a reader sees before the table of contents."""
    return README[:README.index("## Contents")]


def test_dev_cost_near_the_top_matches_the_plan(summary):
    top = README[:README.index("## What it builds")]
    assert f"${summary['hourlyUsd']:.2f}/hour, ${summary['monthlyUsd']:,.0f}/month" in top
    [standard] = summary["vcpusByQuota"]
    assert f"**{standard['vcpus']} vCPUs**" in top


def test_dev_stack_quota_comment_is_the_real_arithmetic(summary):
    [standard] = summary["vcpusByQuota"]
    stated = int(re.search(r"this stack needs (\d+) vCPUs", DEV_STACK).group(1))
    assert stated == standard["vcpus"] == 2 * 48 + 2 + 4
    assert "suits a new" not in DEV_STACK


def test_prerequisites_name_every_tool_the_readme_uses():
    prerequisites = README[README.index("## Prerequisites"):README.index("## The offline plan")]
    for tool in ("Pulumi CLI", "AWS CLI", "Session Manager plugin", "jq", "L-1216C47A"):
        assert tool in prerequisites, tool


def test_cleanup_and_outputs_reach_the_local_backend_of_scripts_deploy():
    deploy = (ROOT / "scripts" / "deploy").read_text()
    assert 'PULUMI_BACKEND_URL="file://$project_dir/.pulumi-state"' in deploy
    # The passphrase lives outside the project directory (XDG Base Directory Specification).
    assert "passphrase_file=${XDG_CONFIG_HOME:-${HOME:?HOME or XDG_CONFIG_HOME must be set}/.config}" \
        "/cloudstack-ec2/passphrase" in deploy
    export = ('export PULUMI_BACKEND_URL="file://$PWD/.pulumi-state" '
              'PULUMI_CONFIG_PASSPHRASE_FILE="${XDG_CONFIG_HOME:-$HOME/.config}/cloudstack-ec2/passphrase"')
    cleanup = README[README.index("## Cleanup"):README.index("## Embedding with the Automation API")]
    assert export in cleanup and "pulumi stack select dev" in cleanup
    assert cleanup.index(export) < cleanup.index("pulumi destroy")
    outputs = README[README.index("## Outputs"):README.index("## Scaling hosts")]
    assert export in outputs and outputs.index(export) < outputs.index("pulumi stack output secretArns")


def test_first_screen_names_the_cheapest_stack_at_the_plans_price(capsys):
    training = plan_summary(capsys, "training")
    top = first_screen()
    assert "Pulumi.training.yaml" in top and "STACK=training ./scripts/deploy" in top
    assert f"${training['hourlyUsd']:.2f}/hour, ${training['monthlyUsd']:,.0f}/month" in top
    [standard] = training["vcpusByQuota"]
    assert f"{standard['vcpus']} vCPUs" in top
    assert training["hourlyUsd"] < plan_summary(capsys, "dev")["hourlyUsd"]


def test_first_screen_says_what_never_ran_for_real_and_how_long_things_take():
    top = first_screen()
    assert "never run on a real AWS account" in top
    status = top[top.index("| real system |"):]
    for system in ("AWS account", "Pulumi CLI", "CloudStack"):
        row = next(line for line in status.splitlines() if system in line)
        assert "| never |" in row, row
    assert "estimates, not measurements" in top
    assert "first `pulumi up`" in top and "`./scripts/test`: about" in top


def readme_cost_rows() -> list[tuple[str, list[str], str, str]]:
    """(stack, --set arguments, USD/hour, USD/month) of each row of README's table of
    example costs."""
    table = README[README.index("| stack | KVM hosts |"):]
    table = table[:table.index("\n\n")]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        stack = re.match(r"`([\w-]+)`", cells[0]).group(1)
        sets = [a for s in re.findall(r"--set ([^`\s]+)", cells[0]) for a in ("--set", s)]
        rows.append((stack, sets, cells[-2], cells[-1].removeprefix("about ")))
    return rows


def test_readme_cost_table_has_the_examples():
    assert [(stack, sets) for stack, sets, *_ in readme_cost_rows()] == [
        ("dev", []), ("training", []), ("prod", []), ("dev", ["--set", "hostInstanceType=c8i.4xlarge"])]


@pytest.mark.parametrize("stack,sets,hourly,monthly", readme_cost_rows())
def test_readme_cost_table_rows_are_the_plans_figures(capsys, stack, sets, hourly, monthly):
    result = cli(capsys, "plan", "--stack", stack, *sets, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert (hourly, monthly) == (f"{summary['hourlyUsd']:.2f}", f"{summary['monthlyUsd']:,.0f}")
