"""The upgrade's pure rules (components/model/upgrades.py): steps, their scripts, versions."""

from __future__ import annotations

import re

import pytest

from components.model import upgrades


def test_steps_follow_the_guides_order_with_java_17_from_4_20():
    steps = upgrades.plan_steps("4.19.1", "4.20", ["m1", "m2"], ["h1", "h2"], "cloudstack-dev")
    # upgrade-4.22.rst "Overview of Upgrade Steps": Java 17, stop every server, back up the database, ...
    assert [s.key for s in steps] == [
        "java:m1", "java:m2", "java:h1", "java:h2", "stop:m1", "stop:m2", "snapshot", "first:m1", "server:m2",
        "agent:h1", "agent:h2", "template", "system-vms", "routers"]
    assert steps[6].what == "RDS snapshot cloudstack-dev-4-19-1-to-4-20, every server stopped"
    # 4.19 needs no Java 17
    assert not [s for s in upgrades.plan_steps("4.19.1", "4.19.3", ["m1"], ["h1"]) if s.action == "java"]
    with pytest.raises(ValueError):
        upgrades.plan_steps("4.20", "4.22", [], ["h1"])


def test_snapshot_names_are_valid_rds_identifiers():
    # CreateDBSnapshot: letters, digits, hyphens; a letter first; no two hyphens in a row; no hyphen last.
    for a, b in (("4.20", "4.22"), ("4.20.1", "4.22.10"), ("4.22", "4.23.0")):
        name = upgrades.snapshot_name(a, b, "cloudstack-dev")
        assert re.fullmatch(r"[A-Za-z](?:[A-Za-z0-9]|-(?=[A-Za-z0-9]))*", name), name


@pytest.mark.parametrize("reported,requested,matches,older", [
    ("4.22.1.0", "4.22", True, False), ("4.22.1.0", "4.22.1", True, False), ("4.22.1.0", "4.22.0", False, True),
    ("4.22.1.0", "4.22.2", False, False), ("4.20.1.0", "4.22", False, False), ("4.22.1.0", "4.20", False, True),
    ("4.22.10.0", "4.22.1", False, True)])
def test_versions_reported_by_cloudstack(reported, requested, matches, older):
    assert upgrades.version_matches(reported, requested) is matches
    assert upgrades.is_older(requested, reported) is older


def test_scripts_never_start_a_server_before_unmasking_and_pin_the_version():
    steps = {s.action: s for s in upgrades.plan_steps("4.20.1", "4.22.1", ["m1", "m2"], ["h1"])}
    stop = upgrades.step_script(steps["stop"], "4.22.1")
    assert "systemctl mask cloudstack-management.service" in stop and "cloudstack-usage" in stop
    first = upgrades.step_script(steps["first"], "4.22.1").splitlines()
    assert first[0].startswith("# cloudstack-ec2 upgrade step first:m1")
    install = next(i for i, line in enumerate(first) if "install cloudstack-management" in line)
    assert "install cloudstack-management=4.22.1* cloudstack-common=4.22.1*" in first[install]
    assert first.index("systemctl unmask cloudstack-management.service") < install < \
        first.index("systemctl start cloudstack-ec2-boot.service")
    assert any("\\14.22|' /etc/apt/sources.list.d/cloudstack.list" in line for line in first)
    assert any('CSEC2_CLOUDSTACK_VERSION="4.22.1"' in line for line in first)
    assert any(upgrades.JAVA_17_OPTIONS in line and "/etc/default/cloudstack-management" in line for line in first)
    agent = upgrades.step_script(steps["agent"], "4.22.1").splitlines()
    assert agent.index("systemctl stop cloudstack-agent.service") < \
        next(i for i, line in enumerate(agent) if "install cloudstack-agent=4.22.1*" in line) < \
        agent.index("systemctl start cloudstack-agent.service")
    java = upgrades.step_script(steps["java"], "4.22.1")
    assert "openjdk-17-jre-headless" in java and "update-alternatives --set java" in java
    with pytest.raises(ValueError):
        upgrades.step_script(steps["template"], "4.22.1")


def test_scripts_pass_shellcheck(tmp_path):
    import subprocess

    for step in upgrades.plan_steps("4.20.1", "4.22", ["m1", "m2"], ["h1"]):
        if step.instance:
            path = tmp_path / f"{step.key.replace(':', '-')}.sh"
            path.write_text("#!/bin/bash\n" + upgrades.step_script(step, "4.22"))
            done = subprocess.run(["shellcheck", "-S", "warning", str(path)], capture_output=True, text=True)
            assert done.returncode == 0, done.stdout
            # what SSM runs with /bin/sh: the here-document hands the script to bash unchanged
            wrapper = tmp_path / "wrapper.sh"
            wrapper.write_text("#!/bin/sh\n" + upgrades.run_command("echo \"$0 ok\"\n"))
            ran = subprocess.run(["sh", str(wrapper)], capture_output=True, text=True)
            assert ran.returncode == 0 and ran.stdout == "bash ok\n", ran.stderr


def _run_stop_step(tmp_path, systemctl: str):
    """The stop step as SSM runs it (with /bin/sh), `systemctl` a shell script standing in for it."""
    import os
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text("#!/bin/sh\n" + systemctl)
    (bin_dir / "systemctl").chmod(0o755)
    stop = next(s for s in upgrades.plan_steps("4.20.1", "4.22", ["m1"], []) if s.action == "stop")
    wrapper = tmp_path / "command.sh"
    wrapper.write_text(upgrades.run_command(upgrades.step_script(stop, "4.22")))
    return subprocess.run(["sh", str(wrapper)], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)})


def test_a_failed_step_names_its_command_and_error_within_what_ssm_returns_of_stderr(tmp_path):
    # GetCommandInvocation returns the first 8,000 characters of a command's stderr: warnings
    # written before the failure must not push the error out of them.
    ran = _run_stop_step(tmp_path, (
        "[ \"$1\" = mask ] || exit 0\n"
        "i=0; while [ $i -lt 200 ]; do echo 'W: a warning of sixty characters, written before the failure' >&2;"
        " i=$((i+1)); done\n"
        "echo 'Failed to mask unit: File /etc/systemd/system/cloudstack-management.service already exists.' >&2\n"
        "exit 1\n"))
    returned = ran.stderr[:8000]
    assert ran.returncode != 0
    assert "systemctl mask cloudstack-management.service (line " in returned, returned[:300]
    assert "Failed to mask unit: File /etc/systemd/system/cloudstack-management.service already exists." in returned
    # the whole output stays on the instance, in the file the message names
    log = re.search(r"all of it: (\S+)\)", returned).group(1)
    assert open(log).read().count("W: a warning") == 200


def test_a_stop_that_leaves_the_server_running_fails_with_a_message(tmp_path):
    # a server that survives its stop: is-active answers 0 (active)
    ran = _run_stop_step(tmp_path, "exit 0\n")
    assert ran.returncode == 1 and "still running after its stop" in ran.stderr, ran.stderr
