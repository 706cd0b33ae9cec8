"""The KVM host boot checks that KVM works (kvm-ok) and sets the guest CPU mode; run for real
against the recording fakes, which model cpu-checker's kvm-ok and the kernel's modprobe."""

from bootlab import KVM_HOST, PREFIX, index_of, is_apt, publish_for_hosts, render

KEY_PARAM = f"{PREFIX}/management-ssh-public-key"
PROPERTIES = "/etc/cloudstack/agent/agent.properties"


def ready(machine, **kvm):
    """The management server has published its key and version; the CPU is as given."""
    publish_for_hosts(machine)
    if kvm:
        machine.update(lambda s: s.update(kvm=kvm))


def test_working_kvm_is_checked_before_the_host_can_be_added(machine):
    ready(machine)
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status == 0, r.output
    calls = machine.calls()
    checked = index_of(calls, lambda c: c["cmd"] == "kvm-ok", "kvm-ok")
    assert index_of(calls, is_apt("install", "cpu-checker"), "cpu-checker install") < checked
    assert checked < index_of(calls, lambda c: c["cmd"] == "aws" and KEY_PARAM in c["args"], "key fetched")
    assert "kvm-ok: INFO: /dev/kvm exists | KVM acceleration can be used" in r.output
    assert not any(c["cmd"] == "modprobe" for c in calls)


def test_guest_cpu_mode_is_host_passthrough_and_other_properties_stay(machine):
    ready(machine)
    props = machine.file(PROPERTIES)
    props.parent.mkdir(parents=True, exist_ok=True)
    # What the cloudstack-agent package ships: comments, other keys, a commented example.
    props.write_text("# agent settings\n#guest.cpu.mode=custom|host-model|host-passthrough\n"
                     "workers=5\nguest.cpu.mode = host-model\n")
    assert machine.run_user_data(render(KVM_HOST)).status == 0
    lines = props.read_text().splitlines()
    assert [line for line in lines if line.startswith("guest.cpu.mode")] == ["guest.cpu.mode=host-passthrough"]
    assert "workers=5" in lines and "#guest.cpu.mode=custom|host-model|host-passthrough" in lines
    # A re-run changes nothing.
    before = props.read_text()
    assert machine.rerun("kvm-host.sh").status == 0
    assert props.read_text() == before


def test_a_virtual_instance_without_nested_virtualization_fails_loudly(machine):
    # A C8i launched without the CPU option (or any other virtual type): no vmx flag.
    ready(machine, cpu_flag=None, dev_kvm=False)
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status != 0
    assert "ERROR in step 'hardware virtualization (kvm-ok) and the guest CPU mode'" in r.output
    assert "KVM cannot run on this instance: kvm-ok says 'INFO: Your CPU does not support KVM extensions" in r.output
    assert "NestedVirtualization=enabled" in r.output
    # Never added: the management server's key is not installed, no CPU mode written.
    assert not machine.file("/root/.ssh/authorized_keys").exists()
    assert not machine.file(PROPERTIES).exists()
    # The failure stays a failure on every later boot.
    r = machine.rerun("kvm-host.sh")
    assert r.status != 0 and "KVM cannot run on this instance" in r.output


def test_an_unloaded_kvm_module_is_loaded_then_checked_again(machine):
    ready(machine, cpu_flag="vmx", dev_kvm=False)
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status == 0, r.output
    assert [c["args"] for c in machine.calls() if c["cmd"] == "modprobe"] == [["kvm_intel"]]
    assert "loading kvm_intel" in r.output
    assert len([c for c in machine.calls() if c["cmd"] == "kvm-ok"]) == 2


def test_vt_x_disabled_by_firmware_fails(machine):
    # kvm-ok finds the flag but the module cannot load: /dev/kvm never appears.
    ready(machine, cpu_flag="vmx", dev_kvm=False, disabled_by_firmware=True)
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status != 0
    assert "is disabled by your BIOS" in r.output and "KVM cannot run on this instance" in r.output
    assert not machine.file("/root/.ssh/authorized_keys").exists()


def test_the_fake_kvm_ok_says_can_be_used_without_dev_kvm_like_the_real_one(machine):
    # cpu-checker's kvm-ok trusts the CPU flag and the firmware register when /dev/kvm is
    # missing: "can be used" with exit 0. The script must not stop at the exit status.
    import subprocess

    machine.update(lambda s: s.update(kvm={"cpu_flag": "vmx", "dev_kvm": False}))
    p = subprocess.run([str(machine.bin / "kvm-ok")], env=machine.env(), capture_output=True, text=True)
    assert p.returncode == 0
    assert "INFO: /dev/kvm does not exist" in p.stdout and "KVM acceleration can be used" in p.stdout


def test_an_added_host_keeps_its_guest_cpu_mode(machine):
    ready(machine)
    props = machine.file(PROPERTIES)
    props.parent.mkdir(parents=True, exist_ok=True)
    props.write_text("guid=0b4c6a7e-1111-2222-3333-444455556666\nguest.cpu.mode=host-model\n")
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status == 0, r.output
    assert props.read_text() == "guid=0b4c6a7e-1111-2222-3333-444455556666\nguest.cpu.mode=host-model\n"
    assert "guest.cpu.mode left as it is" in r.output
