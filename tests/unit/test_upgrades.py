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
    # the order the record of an upgrade's progress sorts its steps by ("the step reached")
    assert list(dict.fromkeys(s.action for s in steps)) == list(upgrades.ACTION_ORDER)
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
        first.index("if ! systemctl start cloudstack-ec2-boot.service; then")
    assert any("\\14.22|' /etc/apt/sources.list.d/cloudstack.list" in line for line in first)
    assert any('CSEC2_CLOUDSTACK_VERSION="4.22.1"' in line for line in first)
    assert any(upgrades.JAVA_17_OPTIONS in line and "/etc/default/cloudstack-management" in line for line in first)
    # every other server installs exactly the first's version, checked to be there before it is unmasked
    server = upgrades.step_script(steps["server"], "4.22.1", "4.22.1.0").splitlines()
    install = next(i for i, line in enumerate(server) if "install cloudstack-management" in line)
    assert "install cloudstack-management=4.22.1.0 cloudstack-common=4.22.1.0" in server[install]
    check = next(i for i, line in enumerate(server) if "apt-cache show cloudstack-management=4.22.1.0" in line)
    assert server.index("apt-get -q -o DPkg::Lock::Timeout=600 update") < check < \
        server.index("systemctl unmask cloudstack-management.service") < install
    for step in ("server", "agent"):
        for package in ("", "4.22.1.0; reboot"):
            with pytest.raises(ValueError, match="needs the package version the first server installed"):
                upgrades.step_script(steps[step], "4.22.1", package)
    agent = upgrades.step_script(steps["agent"], "4.22.1", "4.22.1.0").splitlines()
    # the host's boot script installs the agent (userdata/kvm-host.sh install_packages: the copy,
    # checked with dpkg-deb, else upstream), of the version boot.env names from then on
    assert not any(" install " in line or "sources.list" in line for line in agent)
    version = next(i for i, line in enumerate(agent) if 'CSEC2_CLOUDSTACK_VERSION="4.22.1"' in line)
    boot = agent.index("if ! systemctl start cloudstack-ec2-boot.service; then")
    java = next(i for i, line in enumerate(agent) if upgrades.JAVA_17_OPTIONS in line)
    same = next(i for i, line in enumerate(agent) if line.startswith('[ "$agent" = "4.22.1.0" ] || '))
    assert agent.index("systemctl stop cloudstack-agent.service") < version < boot < same < java < \
        agent.index("systemctl restart cloudstack-agent.service")
    java = upgrades.step_script(steps["java"], "4.22.1")
    assert "openjdk-17-jre-headless" in java and "update-alternatives --set java" in java
    with pytest.raises(ValueError):
        upgrades.step_script(steps["template"], "4.22.1")


def test_scripts_pass_shellcheck(tmp_path):
    import subprocess

    for step in [*upgrades.plan_steps("4.20.1", "4.22", ["m1", "m2"], ["h1"]), upgrades.package_query("m1")]:
        if step.instance:
            path = tmp_path / f"{step.key.replace(':', '-')}.sh"
            path.write_text("#!/bin/bash\n" + upgrades.step_script(step, "4.22", "4.22.1.0"))
            done = subprocess.run(["shellcheck", "-S", "warning", str(path)], capture_output=True, text=True)
            assert done.returncode == 0, done.stdout
            # what SSM runs with /bin/sh: the here-document hands the script to bash unchanged
            wrapper = tmp_path / "wrapper.sh"
            wrapper.write_text("#!/bin/sh\n" + upgrades.run_command("echo \"$0 ok\"\n"))
            ran = subprocess.run(["sh", str(wrapper)], capture_output=True, text=True)
            assert ran.returncode == 0 and ran.stdout == "bash ok\n", ran.stderr


def test_the_package_query_prints_the_installed_version_alone(tmp_path):
    import os
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # dpkg-query -W -f='${Version}\n' NAME prints the version of NAME (dpkg-query(1))
    (bin_dir / "dpkg-query").write_text("#!/bin/sh\necho 'W: a warning' >&2\nprintf '4.22.1.0\\n'\n")
    (bin_dir / "dpkg-query").chmod(0o755)
    wrapper = tmp_path / "command.sh"
    wrapper.write_text(upgrades.run_command(upgrades.step_script(upgrades.package_query("m1"), "4.22")))
    ran = subprocess.run(["sh", str(wrapper)], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)})
    assert ran.returncode == 0 and ran.stdout == "4.22.1.0\n" and ran.stderr == "", ran
    assert upgrades.installed_package(ran.stdout, "4.22") == "4.22.1.0"
    for output, requested in (("4.22.1.0", "4.20"), ("4.22.1.0", "4.22.2"), ("", "4.22"), ("4.22.1.0; x", "4.22"),
                              ("dpkg-query: no packages found matching cloudstack-management", "4.22")):
        with pytest.raises(ValueError, match="expected a package version of CloudStack " + re.escape(requested)):
            upgrades.installed_package(output, requested)


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


def test_the_first_server_publishes_the_hosts_version_before_any_agent_step():
    # The first server's boot re-run (management-server.sh publish_version, publish_packages on
    # CSEC2_MANAGEMENT_INDEX 0) keeps the new version in the bucket the agents install from.
    steps = upgrades.plan_steps("4.20.1", "4.22", ["m1", "m2"], ["h1", "h2"])
    keys = [s.key for s in steps]
    assert keys.index("first:m1") < min(keys.index("agent:h1"), keys.index("agent:h2"))
    first = upgrades.step_script(steps[keys.index("first:m1")], "4.22")
    assert "if ! systemctl start cloudstack-ec2-boot.service; then" in first


def progress(done=(), running="", installed="4.20.1", target="4.22"):
    return upgrades.Progress(installed, target, frozenset(done), running)


def test_the_record_of_progress_reads_back_and_tells_what_was_touched():
    record = progress(["java:m1", "stop:m1"], running="stop:m2")
    assert upgrades.Progress.parse(record.text()) == record
    assert upgrades.Progress.parse('{"from": "4.20.1", "to": "4.22", "done": ["java:m1"]}') == progress(["java:m1"])
    assert upgrades.Progress.parse("") is None
    # the first server's exact version, once its step is done, read back with the rest
    pinned = upgrades.Progress("4.20.1", "4.22", frozenset({"first:m1"}), package="4.22.1.0")
    assert upgrades.Progress.parse(pinned.text()) == pinned and '"package": "4.22.1.0"' in pinned.text()
    with pytest.raises(ValueError, match="not a record"):
        upgrades.Progress.parse("[1, 2]")
    assert record.servers_stopped() and not record.database_upgraded() and record.reached() == \
        "stop:m2 (started, unfinished)"
    assert not progress(["java:m1", "java:h1"]).servers_stopped()
    assert progress(["stop:m1"], running="first:m1").database_upgraded()
    assert progress(["stop:m1", "snapshot", "first:m1", "agent:h1"]).reached() == "agent:h1"


def test_a_revert_before_any_server_stopped_clears_the_record_and_starts_nothing():
    record = progress(["java:m1", "java:h1"], running="java:h2")
    assert upgrades.check_progress(record, "4.20.1", "4.20.1") is None
    assert upgrades.abandoned(record, "4.20.1", "4.20.1")
    warning = upgrades.progress_warning(record, "4.20.1", "4.20.1")
    assert "4.20.1 -> 4.22 stopped before any management server did" in warning and "starts nothing" in warning
    # the same upgrade resumes; a record of a finished upgrade is no concern
    assert not upgrades.abandoned(record, "4.20.1", "4.22")
    assert upgrades.check_progress(record, "4.20.1", "4.22") is None
    assert upgrades.check_progress(progress(["stop:m1"]), "4.22", "4.22") is None
    assert upgrades.progress_warning(None, "4.20.1", "4.20.1") is None


def test_a_revert_after_a_server_stopped_is_refused_naming_both_ways_on():
    record = progress(["java:m1", "stop:m1", "stop:m2", "snapshot", "first:m1"], running="server:m2")
    problem = upgrades.check_progress(record, "4.20.1", "4.20.1", "cloudstack-dev", "/cs/dev/cloudstack-upgrade")
    text = str(problem)
    assert problem.key == "cloudstackVersion" and problem.value == "4.20.1"
    for part in ("the upgrade 4.20.1 -> 4.22 is unfinished", "server:m2 (started, unfinished)",
                 "stopped and masked", "Setting 4.20.1 back would start nothing", "nothing was changed",
                 "set cloudstackVersion to 4.22 and run `pulumi up`",
                 "restore-db-instance-from-db-snapshot --db-snapshot-identifier cloudstack-dev-4-20-1-to-4-22",
                 "aws ssm delete-parameter --name /cs/dev/cloudstack-upgrade"):
        assert part in text, (part, text)
    assert not upgrades.abandoned(record, "4.20.1", "4.20.1")
    # a server stopped by a step not yet recorded as done counts; the database is still the old one
    early = str(upgrades.check_progress(progress(["java:m1"], running="stop:m1"), "4.20.1", "4.20.1"))
    assert "stop:m1 (started, unfinished)" in early and "the database is still the one of 4.20.1" in early
    assert "restore-db-instance-from-db-snapshot" not in early
    # a third version is refused the same way
    assert "Another version (4.22.1) would start nothing" in str(upgrades.check_progress(record, "4.20.1", "4.22.1"))


def test_snapshot_prefix_keeps_letters_and_digits_of_the_stack():
    assert upgrades.snapshot_prefix("Dev_1.eu") == "cloudstack-dev-1-eu"


def _run_script(tmp_path, step, package: str, commands: dict[str, str]):
    """A step's script as SSM runs it (with /bin/sh), each of `commands` a shell script standing
    in for the command of that name, which also logs its arguments to calls.log."""
    import os
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in commands.items():
        (bin_dir / name).write_text(f"#!/bin/sh\necho \"{name} $*\" >>{tmp_path}/calls.log\n{body}")
        (bin_dir / name).chmod(0o755)
    wrapper = tmp_path / "command.sh"
    wrapper.write_text(upgrades.run_command(upgrades.step_script(step, "4.22", package)))
    ran = subprocess.run(["sh", str(wrapper)], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)})
    calls = (tmp_path / "calls.log").read_text().splitlines() if (tmp_path / "calls.log").exists() else []
    return ran, calls


@pytest.mark.parametrize("index", ["", "Package: cloudstack-management\nVersion: 4.22.1.0\n"])
def test_a_server_installs_the_first_servers_version_only_while_the_repository_has_it(tmp_path, index):
    # apt-cache(8) show NAME=VERSION prints nothing when the index lacks that version.
    server = next(s for s in upgrades.plan_steps("4.20.1", "4.22", ["m1", "m2"], []) if s.action == "server")
    ran, calls = _run_script(tmp_path, server, "4.22.1.0", {
        "apt-get": "exit 0\n", "sed": "exit 0\n", "systemctl": "exit 0\n",
        "apt-cache": f"printf '{index}'\n", "dpkg-query": "printf 'install ok installed 4.20.1.0'\n"})
    if index:
        assert ran.returncode == 0, ran.stderr
        assert any(c.startswith("apt-get ") and c.endswith(" install cloudstack-management=4.22.1.0 "
                                                          "cloudstack-common=4.22.1.0") for c in calls), calls
        return
    assert ran.returncode == 1
    assert ran.stderr.startswith("cloudstack-management 4.22.1.0, the version the first management server installed "
                                 "in this upgrade, is neither installed here nor in the CloudStack repository"), ran.stderr
    # neither installed nor unmasked: the server stays stopped, a reboot included
    assert not [c for c in calls if " install " in c or c == "systemctl unmask cloudstack-management.service"], calls


def test_an_agent_of_another_version_than_the_first_servers_fails_its_step(tmp_path):
    agent = next(s for s in upgrades.plan_steps("4.20.1", "4.22", ["m1"], ["h1"]) if s.action == "agent")
    ran, calls = _run_script(tmp_path, agent, "4.22.1.0", {
        "sed": "exit 0\n", "systemctl": "exit 0\n", "grep": "exit 0\n", "dpkg-query": "printf '4.22.2.0'\n"})
    assert ran.returncode == 1 and ran.stderr.startswith(
        "cloudstack-agent 4.22.2.0 installed, not 4.22.1.0, the version the first management server installed"), \
        ran.stderr
    assert "systemctl restart cloudstack-agent.service" not in calls
