"""KVM host and router boot scripts, run for real against recording fakes."""

import os
import shutil
import subprocess
from dataclasses import replace

import pytest

from bootlab import (ANCHOR_KEY, BOOT_BUCKET, KVM_HOST, MANAGEMENT, MGMT_SSH_KEY, NEWEST, PREFIX, ROUTER, boot_files,
                     index_of, is_apt, is_cmd, is_s3_cp, key_block, package_copy, publish_anchor, publish_for_hosts,
                     render)
from components import boot as ud

SCRIPT = "kvm-host.sh"
KEY_PARAM = f"{PREFIX}/management-ssh-public-key"
VERSION_PARAM = f"{PREFIX}/cloudstack-version"


def publish_key(machine, version="4.22.0.0"):
    """What the management server publishes: its SSH key and its package version."""
    publish_for_hosts(machine, version)


def seed_apparmor(machine):
    d = machine.file("/etc/apparmor.d")
    d.mkdir(parents=True, exist_ok=True)
    for profile in ("usr.sbin.libvirtd", "usr.lib.libvirt.virt-aa-helper"):
        (d / profile).write_text("profile x {}\n")


def conf(machine, path):
    return [line for line in machine.file(path).read_text().splitlines() if line and not line.startswith("#")]


def test_first_boot_order_and_configuration(machine):
    publish_key(machine)
    seed_apparmor(machine)
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status == 0, r.output
    calls = machine.calls()
    order = [
        index_of(calls, is_cmd("systemctl", "start", "cloudstack-ec2-overlay.service"), "overlay"),
        index_of(calls, is_cmd("ping"), "overlay gateway check"),
        index_of(calls, lambda c: c["cmd"] == "curl" and "-I" in c["args"], "internet check"),
        index_of(calls, is_cmd("snap", "install", "aws-cli"), "AWS CLI"),
        index_of(calls, lambda c: c["cmd"] == "nft" and c["args"][0] == "-f", "firewall loaded"),
        index_of(calls, lambda c: c["cmd"] == "aws" and VERSION_PARAM in c["args"], "version read"),
        index_of(calls, is_apt("install", "cloudstack-agent"), "agent install"),
        index_of(calls, is_cmd("systemctl", "restart", "libvirtd.service"), "libvirt restart"),
        index_of(calls, lambda c: c["cmd"] == "apparmor_parser", "apparmor"),
        index_of(calls, lambda c: c["cmd"] == "aws" and KEY_PARAM in c["args"], "key fetched"),
    ]
    assert order == sorted(order), order
    assert machine.file("/etc/systemd/networkd.conf.d/60-cloudstack-ec2.conf").read_text() == \
        "[Network]\nManageForeignRoutes=no\n"
    # Never unauthenticated TCP: nothing listens until cloudstack-setup-agent turns on TLS.
    assert conf(machine, "/etc/libvirt/libvirtd.conf") == [
        "listen_tls = 0", "listen_tcp = 0", 'tcp_port = "16509"', 'tls_port = "16514"', 'auth_tcp = "sasl"',
        "mdns_adv = 0"]
    assert conf(machine, "/etc/libvirt/qemu.conf") == ['vnc_listen = "0.0.0.0"']
    assert conf(machine, "/etc/libvirt/libvirt.conf") == ['remote_mode = "legacy"']
    assert 'LIBVIRTD_ARGS="--listen"' in machine.file("/etc/default/libvirtd").read_text()
    units = machine.state()["units"]
    assert set(units["masked"]) >= {"libvirtd.socket", "libvirtd-tcp.socket", "libvirtd-tls.socket"}
    assert not [u for u in units["active"] if u.endswith(".socket")], units["active"]
    assert "libvirtd.service" in units["active"]
    for profile in ("usr.sbin.libvirtd", "usr.lib.libvirt.virt-aa-helper"):
        assert os.readlink(machine.file(f"/etc/apparmor.d/disable/{profile}")) == f"/etc/apparmor.d/{profile}"
    assert machine.file("/root/.ssh/authorized_keys").read_text() == key_block()
    sshd = machine.file("/etc/ssh/sshd_config.d/60-cloudstack-ec2.conf").read_text()
    assert "PasswordAuthentication no" in sshd and "PermitRootLogin prohibit-password" in sshd
    assert machine.file("/etc/chrony/sources.d/amazon-time-sync.sources").read_text().startswith(
        "server 169.254.169.123 ")
    assert "cloudstack-ec2-host-firewall.service" in machine.state()["units"]["enabled"]
    assert machine.file("/etc/hosts").read_text().splitlines()[-2] == "10.100.1.0 kvm0.cloudstack.internal kvm0"
    assert not any(c["cmd"] == "aws" and "secretsmanager" in c["args"] for c in calls), "hosts read no secret"


def test_firewall_admits_each_port_only_from_its_address_classes(machine):
    publish_key(machine)
    assert machine.run_user_data(render(KVM_HOST)).status == 0
    rules = machine.file("/etc/cloudstack-ec2/host-firewall.nft").read_text()
    management, hosts, system = "10.100.0.2-10.100.0.9", "10.100.0.10-10.100.63.253", "10.100.64.1-10.100.64.250"
    # SSH, 1798, libvirt and migration: the management servers and the other hosts.
    assert (f"meta nfproto ipv4 tcp dport {{ 22, 1798, 16509, 16514, 49152-49216 }} ip saddr != {{ {management},"
            f" {hosts} }} counter drop") in rules
    # VNC: the management servers and the console proxy (system range).
    assert f"meta nfproto ipv4 tcp dport {{ 5900-6100 }} ip saddr != {{ {management}, {system} }} counter drop" \
        in rules
    # Tenants (the rest of the overlay): nothing at all.
    assert f"meta nfproto ipv4 ip saddr 10.100.0.0/16 ip saddr != {{ 10.100.0.0/18, {system} }} counter drop" \
        in rules
    # IPv6: nothing but loopback, before any accept for established connections.
    lines = [line.strip() for line in rules.splitlines()]
    assert lines.index('meta nfproto ipv6 counter name "ipv6_refused" drop') == lines.index('iifname "lo" accept') + 1
    assert lines.index("ct state established,related accept") > lines.index('iifname "lo" accept') + 1
    # IPv4 only to an address of the arriving device; VXLAN (overlay.env's port) only to
    # an address in the VPC (the underlay's) or to the overlay's group.
    fib = 'fib daddr . iif type != { local, broadcast, multicast } counter name "not_local_refused" drop'
    vxlan = 'udp dport 4789 ip daddr != { 10.0.0.0/16, 239.255.0.100 } counter name "vxlan_refused" drop'
    # Both before the conntrack accept: no forged reply enters an existing flow.
    assert lines.index(fib) < lines.index("ct state established,related accept")
    assert lines.index(vxlan) < lines.index("ct state established,related accept")
    # VM ports of cloudbr0 (all but the overlay port) claim no infrastructure address; one
    # name per rule (older nftables releases do not match a wildcard inside an anonymous set).
    assert 'iifname "ethovl0" accept' in lines and 'iifname "ethovl0.*" accept' in lines
    assert 'arp saddr ip 10.100.0.0/18 counter name "infra_claim_refused" drop' in lines
    for field in ("ether saddr", "arp saddr ether"):
        assert f'{field} & ff:ff:00:00:00:00 == 0a:00:00:00:00:00 counter name "infra_claim_refused" drop' in lines
    assert 'ip saddr 10.100.0.0/18 counter name "infra_claim_refused" drop' in lines
    assert "flush ruleset" not in rules, "libvirt's and CloudStack's own rules must survive"


def test_libvirtd_restart_fails_while_its_activation_sockets_still_listen(machine):
    # The fake refuses what libvirtd refuses: --listen with systemd's sockets.
    # Masking alone leaves them listening; the script must stop them.
    publish_key(machine)
    files = boot_files()
    files["kvm-host.sh"] = files["kvm-host.sh"].replace("    systemctl stop $LIBVIRTD_SOCKETS\n", "")
    assert files["kvm-host.sh"] != boot_files()["kvm-host.sh"]
    machine.upload_boot_scripts(files)
    r = machine.run_user_data(ud.render_kvm_host_user_data(KVM_HOST, files=files))
    assert r.status != 0
    assert "--listen parameter not permitted with systemd activation sockets" in r.output


def test_libvirtd_restart_fails_when_its_stopped_sockets_are_not_masked(machine):
    # Stopping alone is not enough: libvirtd.service Wants= its sockets and starts
    # them again; the script must also mask them.
    publish_key(machine)
    files = boot_files()
    files["kvm-host.sh"] = files["kvm-host.sh"].replace("    systemctl mask $LIBVIRTD_SOCKETS\n", "")
    assert files["kvm-host.sh"] != boot_files()["kvm-host.sh"]
    machine.upload_boot_scripts(files)
    r = machine.run_user_data(ud.render_kvm_host_user_data(KVM_HOST, files=files))
    assert r.status != 0
    assert "--listen parameter not permitted with systemd activation sockets" in r.output


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("unshare"),
                    reason="needs root, nft and unshare to syntax-check the rules in a scratch namespace")
@pytest.mark.parametrize("boot, table", [(KVM_HOST, "cloudstack_ec2_host"), (MANAGEMENT, "cloudstack_ec2_management")],
                         ids=["kvm-host", "management"])
def test_firewall_rules_are_valid_nftables(machine, boot, table):
    publish_key(machine)
    assert machine.run_user_data(render(boot)).status == 0
    path = machine.file("/etc/cloudstack-ec2/host-firewall.nft")
    for _ in range(2):  # loading twice must work: the table is replaced, not duplicated
        r = subprocess.run(["unshare", "--net", "sh", "-c", f"nft -f {path} && nft -f {path} && nft list ruleset"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.count(f"table inet {table}") == 1


def test_second_run_keeps_one_key_and_installs_nothing(machine):
    publish_key(machine)
    assert machine.run_user_data(render(KVM_HOST)).status == 0
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    assert machine.file("/root/.ssh/authorized_keys").read_text() == key_block()
    assert not any(c["cmd"] in ("apt-get", "useradd") for c in machine.calls())


def test_libvirt_is_left_to_cloudstack_once_the_host_is_added(machine):
    publish_key(machine)
    assert machine.run_user_data(render(KVM_HOST)).status == 0
    # What cloudstack-setup-agent leaves behind when the management server adds the host.
    props = machine.file("/etc/cloudstack/agent/agent.properties")
    props.parent.mkdir(parents=True, exist_ok=True)
    props.write_text("guid=0b4c6a7e-1111-2222-3333-444455556666\n")
    libvirtd = machine.file("/etc/libvirt/libvirtd.conf")
    libvirtd.write_text("listen_tls = 1\nlisten_tcp = 0\n")
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    assert libvirtd.read_text() == "listen_tls = 1\nlisten_tcp = 0\n"
    assert not any(c["cmd"] == "systemctl" and "libvirtd.service" in c["args"] for c in machine.calls())


def test_agent_is_the_management_servers_exact_version_not_the_newest(machine):
    publish_key(machine, version="4.22.0.0")  # the repository's newest 4.22 is NEWEST
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status == 0, r.output
    installs = [c for c in machine.calls() if is_apt("install", "cloudstack-agent")(c)]
    assert len(installs) == 1 and "cloudstack-agent=4.22.0.0" in installs[0]["args"]
    assert machine.state()["versions"]["cloudstack-agent"] == "4.22.0.0" != NEWEST
    # Installed once: a re-run neither waits for the parameter nor installs.
    machine.update(lambda s: s["ssm"].pop(VERSION_PARAM))
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    assert "cloudstack-agent 4.22.0.0 already installed" in r.output
    assert not any(c["cmd"] == "apt-get" for c in machine.calls())


def drop_upstream(machine, version):
    """Upstream's index no longer lists `version` (a newer patch release replaced it)."""
    machine.update(lambda s: [s["repo"][p].remove(version) for p in ("cloudstack-agent", "cloudstack-common")])


def test_agent_is_installed_from_the_deployments_copy_after_upstream_dropped_it(machine):
    publish_key(machine, version="4.22.0.0")
    package_copy(machine, "4.22.0.0")
    drop_upstream(machine, "4.22.0.0")
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status == 0, r.output
    assert machine.state()["versions"]["cloudstack-agent"] == "4.22.0.0"
    assert machine.state()["versions"]["cloudstack-common"] == "4.22.0.0"
    downloads = [c["args"] for c in machine.calls() if is_s3_cp(c) and any("/packages/" in a for a in c["args"])]
    assert [next(a for a in d if a.startswith("s3://")) for d in downloads] == [
        f"s3://{BOOT_BUCKET}/packages/4.22.0.0/cloudstack-common.deb",
        f"s3://{BOOT_BUCKET}/packages/4.22.0.0/cloudstack-agent.deb"]
    installs = [c["args"] for c in machine.calls()
                if is_apt("install")(c) and any(a.endswith(".deb") and "packages." in a for a in c["args"])]
    assert len(installs) == 1 and not any("cloudstack-agent=" in a for a in installs[0])


def test_a_copy_of_another_version_is_refused(machine):
    publish_key(machine, version="4.22.0.0")
    package_copy(machine, "4.22.0.0", file_version=NEWEST)
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status != 0
    assert (f"s3://{BOOT_BUCKET}/packages/4.22.0.0/cloudstack-common.deb is 'cloudstack-common {NEWEST}', not "
            "cloudstack-common 4.22.0.0: not installing it") in r.output
    assert "cloudstack-agent" not in machine.state()["packages"]
    assert "cloudstack-common" not in machine.state()["packages"]


def test_a_version_neither_copied_nor_upstream_is_one_clear_failure(machine):
    publish_key(machine, version="4.22.0.0")
    drop_upstream(machine, "4.22.0.0")
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status != 0
    assert "no copy of cloudstack-common 4.22.0.0" in r.output
    assert (f"cloudstack-agent 4.22.0.0 is neither in the deployment's copy (s3://{BOOT_BUCKET}/packages/4.22.0.0/)"
            " nor in ") in r.output
    assert 'README, "Upgrading CloudStack"' in r.output
    assert len([c for c in machine.calls() if is_apt("install", "cloudstack-agent")(c)]) == 1, "not retried"
    assert "cloudstack-agent" not in machine.state()["packages"]


def test_missing_version_is_a_bounded_wait_then_a_clear_failure(machine):
    publish_anchor(machine, KEY_PARAM, MGMT_SSH_KEY)  # the version is not published yet
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status != 0
    assert r.seconds < 20
    assert f"waiting for SSM parameter {VERSION_PARAM} (attempt 2" in r.output
    assert (f"SSM parameter {VERSION_PARAM} holds no value the management server wrote after 2 s (it does not"
            " exist; the management server writes it once cloudstack-management is installed") in r.output
    assert "cloudstack-agent" not in machine.state()["packages"]


@pytest.mark.parametrize("configured, published, installed", [
    ("4.22.1", NEWEST, NEWEST),
    ("4.22.0", "4.22.0.0", "4.22.0.0"),
    ("4.22.0", NEWEST, None),   # the server runs another release than this host is configured for
])
def test_pinned_release_installs_the_published_version_of_that_release(machine, configured, published, installed):
    publish_key(machine, version=published)
    r = machine.run_user_data(render(replace(KVM_HOST, cloudstack_version=configured)))
    if installed:
        assert r.status == 0, r.output
        assert machine.state()["versions"]["cloudstack-agent"] == installed
    else:
        assert r.status != 0
        assert (f"the management server runs cloudstack-management {published}, but this host is configured for"
                f" CloudStack {configured}") in r.output
        assert "cloudstack-agent" not in machine.state()["packages"]


def test_missing_management_key_is_a_bounded_wait_then_a_clear_failure(machine):
    publish_anchor(machine, VERSION_PARAM, "4.22.0.0")  # the key is not published yet
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status != 0
    assert r.seconds < 20
    assert f"waiting for SSM parameter {KEY_PARAM}" in r.output
    assert f"SSM parameter {KEY_PARAM} holds no value the management server wrote after 2 s (it does not exist" \
        in r.output
    assert not machine.file("/root/.ssh/authorized_keys").exists()


# --- trust anchors: the management server's key and version ------------------------------

OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherManagementKey rotated@mgmt"
PERSONS_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPersonsOwnKey alice@laptop"


def test_a_new_management_key_replaces_the_one_installed_and_keeps_a_persons_keys(machine):
    publish_key(machine)
    keys = machine.file("/root/.ssh/authorized_keys")
    keys.parent.mkdir(parents=True, exist_ok=True)
    keys.write_text(PERSONS_KEY + "\n")   # a key a person put there
    assert machine.run_user_data(render(KVM_HOST)).status == 0
    assert keys.read_text() == PERSONS_KEY + "\n" + key_block()
    # The management server was replaced (a new key): the old one is no longer authorized.
    publish_anchor(machine, KEY_PARAM, OTHER_KEY)
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    assert keys.read_text() == PERSONS_KEY + "\n" + key_block(OTHER_KEY)
    assert MGMT_SSH_KEY not in keys.read_text()


#: Ways a principal with ssm:PutParameter but no kms:Encrypt on the anchor key can write.
FORGED = {
    "a String": ("String", None),
    "a SecureString under the AWS managed key": ("SecureString", "alias/aws/ssm"),
    "a SecureString under another key": ("SecureString", ANCHOR_KEY.replace("1234abcd", "9999ffff")),
}


@pytest.mark.parametrize("type_, key", FORGED.values(), ids=FORGED)
@pytest.mark.parametrize("param, forged", [(KEY_PARAM, OTHER_KEY), (VERSION_PARAM, NEWEST)], ids=["key", "version"])
def test_a_value_the_management_server_did_not_write_is_refused(machine, param, forged, type_, key):
    publish_key(machine)   # the management server published 4.22.0.0 and MGMT_SSH_KEY ...
    publish_anchor(machine, param, forged, type_=type_, key=key)   # ... then someone else wrote
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status != 0
    assert f"refused SSM parameter {param}: its newest version is a {type_}" in r.output
    assert f"not a SecureString under {ANCHOR_KEY}" in r.output
    keys = machine.file("/root/.ssh/authorized_keys")
    assert not keys.exists() or OTHER_KEY not in keys.read_text()
    assert machine.state()["versions"].get("cloudstack-agent") != NEWEST
    assert not any("host-ready/" in " ".join(c["args"]) for c in machine.calls() if c["cmd"] == "aws")


def test_a_forged_key_leaves_the_installed_one_in_place(machine):
    publish_key(machine)
    assert machine.run_user_data(render(KVM_HOST)).status == 0
    publish_anchor(machine, KEY_PARAM, OTHER_KEY, type_="String")
    r = machine.rerun(SCRIPT)
    assert r.status != 0 and "refused SSM parameter" in r.output
    assert machine.file("/root/.ssh/authorized_keys").read_text() == key_block()


def test_non_root_host_user_gets_the_key_and_passwordless_sudo(machine):
    publish_key(machine)
    r = machine.run_user_data(render(replace(KVM_HOST, host_user="cloudstack")))
    assert r.status == 0, r.output
    assert machine.state()["users"] == ["cloudstack"]
    assert machine.file("/home/cloudstack/.ssh/authorized_keys").read_text() == key_block()
    assert machine.file("/etc/sudoers.d/90-cloudstack-ec2").read_text() == "cloudstack ALL=(ALL) NOPASSWD:ALL\n"
    assert any(c["cmd"] == "chown" and c["args"][-2] == "cloudstack:" for c in machine.calls())
    machine.clear_calls()
    assert machine.rerun(SCRIPT).status == 0
    assert not any(c["cmd"] == "useradd" for c in machine.calls())


def test_router_boots_without_secrets_or_waits(machine):
    r = machine.run_user_data(render(ROUTER))
    assert r.status == 0, r.output
    calls = machine.calls()
    assert not any(c["cmd"] in ("mysql", "ping") for c in calls)
    # curl only for the CloudWatch agent's package, from AWS's download bucket.
    assert all("amazoncloudwatch-agent-" in c["args"][-1] for c in calls if c["cmd"] == "curl")
    # What it reads from AWS: the library and its own role script (through its Elastic
    # IP), then its forwards to VMs and to the console proxy (no secret, no wait), last
    # the CloudWatch agent's installer.
    aws = [c for c in calls if c["cmd"] == "aws"]
    assert is_s3_cp(aws[0]) and is_s3_cp(aws[1]), aws[:2]
    assert ["library-" in aws[0]["args"][-2], "router-" in aws[1]["args"][-2]] == [True, True], aws[:2]
    assert is_s3_cp(aws[-1]) and not any(is_s3_cp(c) for c in aws[2:-1]), aws
    assert "cloudwatch-agent-" in aws[-1]["args"][-2]
    assert [a[a.index("--name") + 1] for a in (c["args"] for c in aws[2:-1]) if "get-parameter" in a] == \
        [f"{PREFIX}/ui-forward", f"{PREFIX}/router-forwards", f"{PREFIX}/console-forwards"], aws
    assert all("get-parameter" in c["args"] for c in aws[2:-1]), aws
    # overlay-network.sh needs nft on the router: installed before the overlay starts.
    assert index_of(calls, is_apt("install", "nftables"), "nftables install") < \
        index_of(calls, is_cmd("systemctl", "start", "cloudstack-ec2-overlay.service"), "overlay")
    assert machine.file("/etc/systemd/networkd.conf.d/60-cloudstack-ec2.conf").read_text() == \
        "[Network]\nManageForeignRoutes=no\n"
    assert not any(c["cmd"] == "systemctl" and "systemd-networkd.service" in c["args"] for c in calls)
    env = machine.file("/etc/cloudstack-ec2/overlay.env").read_text()
    # The UI/API's forward is the parameter's (forwards.env), never the user data's.
    assert 'OVERLAY_ROLE="router"' in env and "ROUTER_DNAT" not in env
    assert machine.file("/usr/local/lib/cloudstack-ec2/overlay-network.sh").stat().st_mode & 0o111
    unit = machine.file("/etc/systemd/system/cloudstack-ec2-overlay.service").read_text()
    assert "EnvironmentFile=/etc/cloudstack-ec2/overlay.env" in unit
    assert "Before=libvirtd.service cloudstack-agent.service cloudstack-management.service" in unit
    assert os.readlink(machine.file("/usr/local/sbin/cloudstack-ec2-boot")) == \
        "/usr/local/lib/cloudstack-ec2/stage2.sh"
    machine.clear_calls()
    assert machine.rerun("router.sh").status == 0
    assert not any(c["cmd"] == "apt-get" for c in machine.calls()), "nftables and chrony are installed"


def test_readiness_is_signalled_last_once_the_agent_and_the_key_are_in_place(machine):
    """The registration adds the host only after this parameter (components/registration/hosts.py
    waits for it: addHost fails while the agent or the management server's key is missing), so
    it must come after the agent install and the key, as the last AWS call of the boot's own
    work; only the CloudWatch agent's installer is fetched after it (the registration must not
    wait for that)."""
    publish_key(machine)
    seed_apparmor(machine)
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status == 0, r.output
    calls = machine.calls()
    ready = f"{PREFIX}/host-ready/{KVM_HOST.overlay.overlay_address.split('/')[0]}"
    signal = index_of(calls, lambda c: c["cmd"] == "aws" and "put-parameter" in c["args"] and ready in c["args"],
                      "readiness signalled")
    assert signal > index_of(calls, is_apt("install", "cloudstack-agent"), "agent install")
    assert signal > index_of(calls, lambda c: c["cmd"] == "aws" and KEY_PARAM in c["args"], "key fetched")
    agent = index_of(calls, lambda c: is_s3_cp(c) and "cloudwatch-agent-" in c["args"][-2], "agent installer")
    assert signal == max(i for i, c in enumerate(calls) if c["cmd"] == "aws" and i != agent)
    assert agent > signal
    assert ready in machine.state()["ssm"]


# --- a host bridges, it never routes ------------------------------------------------------

NO_ROUTING_FILE = "/etc/sysctl.d/90-cloudstack-ec2-no-routing.conf"
FORWARDING_OFF = {"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0",
                  "net.ipv6.conf.default.forwarding": "0"}


def default_network(machine):
    return machine.state()["libvirt"]["networks"]["default"]


def test_boot_stops_libvirts_default_network_and_turns_forwarding_off(machine):
    # Installing the agent defines libvirt's autostarted NAT network, and the boot's own
    # libvirtd restart starts it, which turns IPv4 forwarding on (fakes/fake.py, after
    # libvirt's bridge_driver.c): the step after it must undo both.
    publish_key(machine)
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status == 0, r.output
    calls = machine.calls()
    restart = index_of(calls, is_cmd("systemctl", "restart", "libvirtd.service"), "libvirt restart")
    destroy = index_of(calls, lambda c: c["cmd"] == "virsh" and "net-destroy" in c["args"], "network stopped")
    applied = index_of(calls, lambda c: c["cmd"] == "sysctl" and "-p" in c["args"], "sysctl file applied")
    assert restart < destroy < applied
    assert default_network(machine) == {"forward": "nat", "autostart": False, "active": False}
    assert machine.state()["sysctl"] == FORWARDING_OFF
    assert conf(machine, NO_ROUTING_FILE) == [f"{key} = 0" for key in FORWARDING_OFF]


def test_every_later_boot_turns_a_returned_default_network_and_forwarding_off_again(machine):
    publish_key(machine)
    assert machine.run_user_data(render(KVM_HOST)).status == 0
    # The host added since (cloudstack-setup-agent's guid): the libvirt step is skipped, this one is not.
    props = machine.file("/etc/cloudstack/agent/agent.properties")
    props.write_text(props.read_text() + "guid=0b4c6a7e-1111-2222-3333-444455556666\n")
    # Someone marked the network autostart again and libvirtd started it: forwarding is back on.
    machine.update(lambda s: (s["libvirt"]["networks"]["default"].update(autostart=True, active=True),
                              s["sysctl"].update({"net.ipv4.ip_forward": "1"})))
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    assert default_network(machine) == {"forward": "nat", "autostart": False, "active": False}
    assert machine.state()["sysctl"] == FORWARDING_OFF
    # Nothing left to stop: the next run only applies and checks.
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    assert [c["args"] for c in machine.calls() if c["cmd"] == "virsh"] == [
        ["-q", "net-list", "--all", "--autostart", "--name"], ["-q", "net-list", "--name"]]
    assert machine.state()["sysctl"] == FORWARDING_OFF


def test_a_kernel_without_ipv6_gets_the_ipv4_setting_alone(machine):
    publish_key(machine)
    machine.update(lambda s: s.update(sysctl={"net.ipv4.ip_forward": "0"}))
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status == 0, r.output
    assert conf(machine, NO_ROUTING_FILE) == ["net.ipv4.ip_forward = 0"]
    assert machine.state()["sysctl"] == {"net.ipv4.ip_forward": "0"}


# --- the router's forwards to VMs (vmForwards) -------------------------------------------

FORWARDS_PARAM = f"{PREFIX}/router-forwards"
CONSOLE_PARAM = f"{PREFIX}/console-forwards"
UI_FORWARDED = 'ROUTER_DNAT="tcp:8080:10.100.0.2:8080"\n'
NO_FORWARDS = UI_FORWARDED + 'VM_FORWARDS=""\nCONSOLE_FORWARDS=""\n'


def set_forwards(machine, value, parameter=FORWARDS_PARAM):
    machine.update(lambda s: s["ssm"].update({parameter: value}))


def overlay_restarts(machine):
    return [c for c in machine.calls() if c["cmd"] == "systemctl" and c["args"][:1] == ["restart"]
            and "cloudstack-ec2-overlay.service" in c["args"]]


def test_router_applies_changed_forwards_in_place(machine):
    assert machine.run_user_data(render(ROUTER)).status == 0
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == NO_FORWARDS
    assert "cloudstack-ec2-forwards.timer" in machine.state()["units"]["enabled"]
    timer = machine.file("/etc/systemd/system/cloudstack-ec2-forwards.service").read_text()
    assert "ExecStart=/usr/local/lib/cloudstack-ec2/router.sh forwards" in timer
    unit = machine.file("/etc/systemd/system/cloudstack-ec2-overlay.service").read_text()
    assert "EnvironmentFile=-/etc/cloudstack-ec2/forwards.env" in unit
    # A new vmForwards: the parameter changes, the timer's run applies it.
    set_forwards(machine, "tcp:2222:10.100.128.5:22 udp:5353:10.100.128.9:53")
    machine.clear_calls()
    r = machine.rerun("router.sh", args=["forwards"])
    assert r.status == 0, r.output
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == UI_FORWARDED + \
        'VM_FORWARDS="tcp:2222:10.100.128.5:22 udp:5353:10.100.128.9:53"\nCONSOLE_FORWARDS=""\n'
    assert len(overlay_restarts(machine)) == 1
    assert not any(c["cmd"] == "apt-get" for c in machine.calls()), "a refresh installs nothing"
    # Unchanged: nothing restarted.
    machine.clear_calls()
    assert machine.rerun("router.sh", args=["forwards"]).status == 0
    assert overlay_restarts(machine) == []


UI_PARAM = f"{PREFIX}/ui-forward"


def test_the_running_router_stops_forwarding_the_ui_once_it_is_behind_the_load_balancer(machine):
    """Pulumi writes "none" when the UI/API moves behind the load balancer: the next run of
    the timer drops the forward in place (forwards.env is read after overlay.env, so its
    empty ROUTER_DNAT wins), and brings it back when the load balancer goes."""
    assert machine.run_user_data(render(ROUTER)).status == 0
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == NO_FORWARDS
    set_forwards(machine, "none", UI_PARAM)
    machine.clear_calls()
    r = machine.rerun("router.sh", args=["forwards"])
    assert r.status == 0, r.output
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == \
        'ROUTER_DNAT=""\nVM_FORWARDS=""\nCONSOLE_FORWARDS=""\n'
    assert len(overlay_restarts(machine)) == 1
    unit = machine.file("/etc/systemd/system/cloudstack-ec2-overlay.service").read_text()
    assert unit.index("EnvironmentFile=/etc/cloudstack-ec2/overlay.env") < \
        unit.index("EnvironmentFile=-/etc/cloudstack-ec2/forwards.env")
    set_forwards(machine, "tcp:8080:10.100.0.2:8080", UI_PARAM)
    assert machine.rerun("router.sh", args=["forwards"]).status == 0
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == NO_FORWARDS


def test_a_ui_forward_to_another_port_changes_nothing(machine):
    assert machine.run_user_data(render(ROUTER)).status == 0
    set_forwards(machine, "tcp:22:10.100.0.2:22", UI_PARAM)
    machine.clear_calls()
    r = machine.rerun("router.sh", args=["forwards"])
    assert r.status != 0 and "holds 'tcp:22:10.100.0.2:22'" in r.output
    assert overlay_restarts(machine) == []
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == NO_FORWARDS


def test_forwards_the_overlay_refuses_are_never_kept(machine):
    assert machine.run_user_data(render(ROUTER)).status == 0
    set_forwards(machine, "tcp:2222:10.100.128.5:22")
    assert machine.rerun("router.sh", args=["forwards"]).status == 0
    good = machine.file("/etc/cloudstack-ec2/forwards.env").read_text()
    set_forwards(machine, "tcp:2222:10.100.0.2:22")  # overlay-network.sh refuses infrastructure targets
    machine.update(lambda s: s["units"]["failing"].append("cloudstack-ec2-overlay.service"))
    r = machine.rerun("router.sh", args=["forwards"])
    assert r.status != 0 and "refused the forwards 'tcp:2222:10.100.0.2:22'" in r.output
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == good, "the next boot would fail"


def test_malformed_forwards_parameter_changes_nothing(machine):
    assert machine.run_user_data(render(ROUTER)).status == 0
    set_forwards(machine, "tcp:2222:10.100.128.5:22 ssh-to-anything")
    machine.clear_calls()
    r = machine.rerun("router.sh", args=["forwards"])
    assert r.status != 0 and "holds 'ssh-to-anything'" in r.output
    assert overlay_restarts(machine) == []
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == NO_FORWARDS


CONSOLE = "tcp:80:10.100.128.7:80 tcp:8080:10.100.128.7:8080"  # components/model/consoles.console_forwards


def test_router_applies_changed_console_forwards_in_place(machine):
    # The registration publishes the console proxy's public IP (and a new one when the
    # proxy is recreated); the timer's run applies it beside the forwards to VMs.
    assert machine.run_user_data(render(ROUTER)).status == 0
    set_forwards(machine, "tcp:2222:10.100.128.5:22")
    set_forwards(machine, CONSOLE, CONSOLE_PARAM)
    machine.clear_calls()
    r = machine.rerun("router.sh", args=["forwards"])
    assert r.status == 0, r.output
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == UI_FORWARDED + \
        f'VM_FORWARDS="tcp:2222:10.100.128.5:22"\nCONSOLE_FORWARDS="{CONSOLE}"\n'
    assert len(overlay_restarts(machine)) == 1
    moved = CONSOLE.replace("10.100.128.7", "10.100.128.8")
    set_forwards(machine, moved, CONSOLE_PARAM)
    machine.clear_calls()
    assert machine.rerun("router.sh", args=["forwards"]).status == 0
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == UI_FORWARDED + \
        f'VM_FORWARDS="tcp:2222:10.100.128.5:22"\nCONSOLE_FORWARDS="{moved}"\n'
    assert len(overlay_restarts(machine)) == 1
    # Back to "none" (e.g. the zone is gone): nothing forwarded to a stale address.
    set_forwards(machine, "none", CONSOLE_PARAM)
    assert machine.rerun("router.sh", args=["forwards"]).status == 0
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == UI_FORWARDED + \
        'VM_FORWARDS="tcp:2222:10.100.128.5:22"\nCONSOLE_FORWARDS=""\n'


def test_console_forwards_the_overlay_refuses_are_never_kept(machine):
    assert machine.run_user_data(render(ROUTER)).status == 0
    set_forwards(machine, CONSOLE, CONSOLE_PARAM)
    assert machine.rerun("router.sh", args=["forwards"]).status == 0
    good = machine.file("/etc/cloudstack-ec2/forwards.env").read_text()
    # Right shape, but overlay-network.sh refuses the target (the management server,
    # infrastructure; tests/lab/test_overlay_script.py): its unit fails to restart.
    set_forwards(machine, CONSOLE.replace("10.100.128.7", "10.100.0.2"), CONSOLE_PARAM)
    machine.update(lambda s: s["units"]["failing"].append("cloudstack-ec2-overlay.service"))
    r = machine.rerun("router.sh", args=["forwards"])
    assert r.status != 0 and "console forwards 'tcp:80:10.100.0.2:80 tcp:8080:10.100.0.2:8080'" in r.output
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == good, "the next boot would fail"


@pytest.mark.parametrize("value, entry", [
    ("tcp:22:10.100.128.7:22", "tcp:22:10.100.128.7:22"),          # not a console port
    ("tcp:80:10.100.128.7:8080", "tcp:80:10.100.128.7:8080"),      # not as console_forwards writes it
    ("udp:80:10.100.128.7:80", "udp:80:10.100.128.7:80"),
    ("10.100.128.7", "10.100.128.7"),
])
def test_malformed_console_parameter_changes_nothing(machine, value, entry):
    assert machine.run_user_data(render(ROUTER)).status == 0
    set_forwards(machine, CONSOLE, CONSOLE_PARAM)
    assert machine.rerun("router.sh", args=["forwards"]).status == 0
    good = machine.file("/etc/cloudstack-ec2/forwards.env").read_text()
    set_forwards(machine, value, CONSOLE_PARAM)
    machine.clear_calls()
    r = machine.rerun("router.sh", args=["forwards"])
    assert r.status != 0 and f"SSM parameter {CONSOLE_PARAM} holds '{entry}'" in r.output, r.output
    assert overlay_restarts(machine) == []
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == good


def test_unreadable_console_parameter_changes_nothing(machine):
    # E.g. a router whose role may not read it: a clear error, the forwards in place stay.
    assert machine.run_user_data(render(ROUTER)).status == 0
    machine.update(lambda s: s["ssm"].pop(CONSOLE_PARAM))
    machine.clear_calls()
    r = machine.rerun("router.sh", args=["forwards"])
    assert r.status != 0 and f"cannot read SSM parameter {CONSOLE_PARAM}" in r.output, r.output
    assert overlay_restarts(machine) == []
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == NO_FORWARDS


def test_libvirtd_does_not_start_when_the_firewall_fails_to_load(machine):
    # The firewall unit is a requirement of the listeners (RequiredBy= + Before=):
    # rules that do not load keep libvirtd (and sshd) from starting, open.
    publish_key(machine)
    machine.update(lambda s: s["units"]["failing"].append("cloudstack-ec2-host-firewall.service"))
    r = machine.run_user_data(render(KVM_HOST))
    assert r.status != 0
    assert "A dependency job for libvirtd.service failed" in r.output
    units = machine.state()["units"]
    assert "libvirtd.service" not in units["active"]
    assert set(units["requires"]) == {"libvirtd.service", "ssh.service", "cloudstack-management.service"}


def test_a_router_booting_with_refused_console_forwards_still_refreshes_them(machine):
    # A replaced router of an existing stack: console-forwards still names the console
    # proxy's address from before CONSOLE_RANGE (a tenant-range address), which the
    # overlay refuses until the registration moves the proxy and rewrites it.
    stale, moved = CONSOLE, CONSOLE.replace("10.100.128.7", "10.100.192.3")
    set_forwards(machine, stale, CONSOLE_PARAM)
    machine.update(lambda s: s["units"].setdefault("overlay_refuses", []).append("10.100.128.7"))
    r = machine.run_user_data(render(ROUTER))
    assert r.status != 0 and "refused the forwards" in r.output, r.output
    # The boot failed at the forwards, but the overlay runs without them and the
    # refresh timer is on: the registration's next value reaches the router.
    assert "cloudstack-ec2-forwards.timer" in machine.state()["units"]["enabled"]
    assert not machine.file("/etc/cloudstack-ec2/forwards.env").exists()
    assert "cloudstack-ec2-overlay.service" in machine.state()["units"]["active"]
    set_forwards(machine, moved, CONSOLE_PARAM)
    r = machine.rerun("router.sh", args=["forwards"])
    assert r.status == 0, r.output
    assert machine.file("/etc/cloudstack-ec2/forwards.env").read_text() == UI_FORWARDED + \
        f'VM_FORWARDS=""\nCONSOLE_FORWARDS="{moved}"\n'


def upgraded_host(machine, copied: bool, upstream: bool):
    """A host on 4.22.0.0, then what an upgrade to "4.22.1" does before re-running its boot
    script (components/model/upgrades.py, the agent step): boot.env names the new version; the
    first management server published NEWEST, kept in the deployment's copy or not (`copied`),
    still upstream or not (`upstream`)."""
    publish_key(machine, version="4.22.0.0")
    assert machine.run_user_data(render(replace(KVM_HOST, cloudstack_version="4.22.0"))).status == 0
    env = machine.file("/etc/cloudstack-ec2/boot.env")
    env.write_text(env.read_text().replace('CSEC2_CLOUDSTACK_VERSION="4.22.0"', 'CSEC2_CLOUDSTACK_VERSION="4.22.1"'))
    publish_key(machine, version=NEWEST)
    if copied:
        package_copy(machine, NEWEST)
    if not upstream:
        drop_upstream(machine, NEWEST)
    machine.clear_calls()
    return machine.rerun(SCRIPT)


def test_an_upgrade_installs_the_published_version_from_the_deployments_copy(machine):
    r = upgraded_host(machine, copied=True, upstream=False)
    assert r.status == 0, r.output
    assert "cloudstack-agent 4.22.0.0 installed, CloudStack 4.22.1 configured: upgrading it" in r.output
    assert machine.state()["versions"]["cloudstack-agent"] == NEWEST
    assert machine.state()["versions"]["cloudstack-common"] == NEWEST
    checked = [c["args"] for c in machine.calls() if c["cmd"] == "dpkg-deb"]
    assert [a[-1] for a in checked] == ["Package", "Version", "Package", "Version"]


def test_an_upgrade_without_a_copy_installs_the_exact_version_from_upstream(machine):
    r = upgraded_host(machine, copied=False, upstream=True)
    assert r.status == 0, r.output
    installs = [c["args"] for c in machine.calls() if is_apt("install", "cloudstack-agent")(c)]
    assert len(installs) == 1 and f"cloudstack-agent={NEWEST}" in installs[0]
    assert machine.state()["versions"]["cloudstack-agent"] == NEWEST


def test_an_upgrade_to_a_version_neither_copied_nor_upstream_is_one_clear_failure(machine):
    r = upgraded_host(machine, copied=False, upstream=False)
    assert r.status != 0
    assert (f"cloudstack-agent {NEWEST} is neither in the deployment's copy (s3://{BOOT_BUCKET}/packages/{NEWEST}/)"
            " nor in ") in r.output
    assert machine.state()["versions"]["cloudstack-agent"] == "4.22.0.0"
