"""Runs the rendered boot scripts for real in a scratch root with recording fakes.

The user data a renderer produces is decoded and executed with bash; it writes
its files under CSEC2_ROOT (a temp dir) and runs the role script, whose system
commands (apt-get, aws, mysql, systemctl, curl, cloudstack-*, ...) are the
fakes of tests/userdata/fakes/fake.py, first on PATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from components import boot as ud  # noqa: E402
from components.model import regions  # noqa: E402

FAKE = Path(__file__).parent / "fakes" / "fake.py"
FAKE_SLEEP = Path(__file__).parent / "fakes" / "sleep"
FAKED_COMMANDS = [
    "snap", "apt-get", "dpkg-query", "mysql", "cloudstack-setup-databases", "cloudstack-setup-management",
    "cloud-install-sys-tmplt", "systemctl", "curl", "mount", "mountpoint", "hostnamectl", "getent", "useradd",
    "chown", "nft", "apparmor_parser", "ssh-keygen", "ping", "kvm-ok", "modprobe", "keytool", "unbound-checkconf",
    "ip", "virsh", "sysctl",
    "gpg", "gpgv", "dpkg", "dpkg-deb",
]
#: The fingerprint of AWS's key that signs the CloudWatch agent's packages.
CLOUDWATCH_AGENT_KEY = "937616F3450B7D806CBD9725D58167303B789C72"

SYSTEM_PATH = "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
PREFIX = "/cloudstack-ec2/test"
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cloudstack-ec2/test/{}-AbCdEf"
SECRETS = ud.ManagementSecrets(**{k: ARN.format(k.replace("_", "-")) for k in
                                  ("db_cloud", "cloudstack_keys", "admin", "api_keys")})
#: The master user's secret RDS manages (named rds!db-<uuid>), published in the SSM parameter db-master-secret.
MASTER_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-0f1e2d3c-4b5a-4978-8897-a6b5c4d3e2f1-AbCdEf"
MASTER_PASSWORD = "MasterPw0rdXyz123"
CLOUD_PASSWORD = "CloudPw0rdAbc456"
ADMIN_PASSWORD = "AdminPw0rdQwe789"
MANAGEMENT_KEY = "MgmtKeyZZZ111"
DATABASE_KEY = "DbKeyYYY222"
SECRET_VALUES = (MASTER_PASSWORD, CLOUD_PASSWORD, ADMIN_PASSWORD, MANAGEMENT_KEY, DATABASE_KEY)
#: The management server's anchor key (ManagementServer.anchor_key_arn).
ANCHOR_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
MGMT_SSH_KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCfake+key/== cloud@mgmt"
TINY_WAITS = ud.BootWaits(parameters_seconds=2, secrets_seconds=2, database_seconds=2, api_seconds=3,
                          ssh_key_seconds=2, network_seconds=2, interval_seconds=1)
#: The version the fake repository's newest cloudstack-management/-agent has.
NEWEST = "4.22.1.0"
#: The RDS endpoint (the SSM parameter db-endpoint) and the CA that signs its certificate
#: (components/resources/database.py CA_CERT_IDENTIFIER: "Amazon RDS <region> Root CA RSA2048 G1").
DB_HOST = "db.example.internal"
DB_CA = "Amazon RDS eu-west-1 Root CA RSA2048 G1"
#: The roots of the region's RDS certificate bundle, one per RDS CA.
RDS_BUNDLE = [DB_CA, "Amazon RDS eu-west-1 Root CA RSA4096 G1", "Amazon RDS eu-west-1 Root CA ECC384 G1"]


def member_overlay(address: str) -> ud.OverlayConfig:
    return ud.OverlayConfig(role="member", vxlan_id=100, vxlan_group="239.255.0.100", overlay_address=address,
                            overlay_mtu=8450, vpc_cidr="10.0.0.0/16", overlay_gateway="10.100.0.1")


ROUTER_OVERLAY = ud.OverlayConfig(role="router", vxlan_id=100, vxlan_group="239.255.0.100",
                                  overlay_address="10.100.0.1/16", overlay_mtu=8450, vpc_cidr="10.0.0.0/16",
                                  storage_cidr="10.0.0.0/24")
#: The router's forward of the UI/API (components/program/control_plane.py ui_forward).
UI_FORWARD = "tcp:8080:10.100.0.2:8080"

#: The router's console Elastic IP (components/model/consoles.py).
CONSOLE_ELASTIC_IP = "203.0.113.80"
#: The deployment's boot-script bucket (the fake `aws s3 cp` serves it from the state's "s3").
BOOT_BUCKET = "cloudstack-ec2-test-20261130000000000000000001"
#: The management server's instance role (its bootstrap policies are deleted from it).
MANAGEMENT_ROLE = "management-role-0a1b2c3"
#: The system VMs' public range of the 10.100.0.0/16 overlay (ipplan.system_public_range).
SYSTEM_PUBLIC_RANGE = "10.100.192.1-10.100.192.8"
MANAGEMENT = ud.ManagementBoot(aws_region="eu-west-1", prefix=PREFIX, fqdn="mgmt.cloudstack.internal",
                               overlay=member_overlay("10.100.0.2/16"), secrets=SECRETS, zone_name="zone1",
                               boot_bucket=BOOT_BUCKET, console_address=CONSOLE_ELASTIC_IP, anchor_key_arn=ANCHOR_KEY,
                               system_public_range=SYSTEM_PUBLIC_RANGE,
                               role_name=MANAGEMENT_ROLE, waits=TINY_WAITS)
KVM_HOST = ud.KvmHostBoot(aws_region="eu-west-1", prefix=PREFIX, fqdn="kvm0.cloudstack.internal",
                          boot_bucket=BOOT_BUCKET, anchor_key_arn=ANCHOR_KEY,
                          overlay=member_overlay("10.100.1.0/16"), waits=TINY_WAITS)
ROUTER = ud.RouterBoot(aws_region="eu-west-1", prefix=PREFIX, fqdn="router.cloudstack.internal",
                       boot_bucket=BOOT_BUCKET,
                       overlay=ROUTER_OVERLAY, waits=TINY_WAITS)


def boot_files() -> dict[str, str]:
    """The package files; a stand-in overlay script only while the real one is not there yet."""
    try:
        return ud.load_boot_files()
    except ud.UserDataError:
        files = {}
        for p in (REPO / "userdata").iterdir():
            if p.suffix in (".sh", ".service", ".timer"):
                files[p.name] = p.read_text()
        files.setdefault("overlay-network.sh", "#!/bin/bash\necho overlay stand-in\n")
        return files


def initial_state() -> dict:
    return {
        "ssm": {f"{PREFIX}/db-endpoint": f"{DB_HOST}:3306", f"{PREFIX}/efs-dns": "fs-1.efs.example",
                f"{PREFIX}/router-forwards": "none", f"{PREFIX}/console-forwards": "none",
                f"{PREFIX}/ui-forward": UI_FORWARD,
                f"{PREFIX}/db-master-secret": MASTER_SECRET,
                # The agents' configurations (components/resources/monitoring.py writes them).
                **{f"{PREFIX}/cloudwatch-agent/{role}": "{}" for role in ("management", "kvm-host", "router")}},
        # Type and KMS key of each parameter that is not a String: {"Type", "KeyId"} (fake.ssm_put).
        "ssm_meta": {},
        # Keys this instance's role may encrypt with: the anchor key's policy allows the
        # management server's role (components/resources/anchor.py; a host never encrypts).
        "kms": {"encrypt": [ANCHOR_KEY]},
        # The management role's bootstrap policies (components/resources/management.py):
        # what only they allow is refused once the boot deleted them (fakes/fake.py iam_denied).
        # Reading the API keys is not among them: the role's steady policy grants it too (the
        # console forwards publisher, userdata/console-forwards.sh).
        "iam": {"role": MANAGEMENT_ROLE, "policies": ["cloudstack-ec2-bootstrap", "cloudstack-ec2-bootstrap-db-master"],
                "grants": {
                    "cloudstack-ec2-bootstrap": [
                        ["secretsmanager:GetSecretValue", SECRETS.admin],
                        *(["secretsmanager:PutSecretValue", s] for s in
                          (SECRETS.db_cloud, SECRETS.cloudstack_keys, SECRETS.admin, SECRETS.api_keys)),
                        ["ssm:GetParameter", f"{PREFIX}/db-master-secret"],
                        ["ssm:PutParameter", f"{PREFIX}/bootstrap/done"]],
                    "cloudstack-ec2-bootstrap-db-master": [["secretsmanager:GetSecretValue", MASTER_SECRET]]}},
        "secrets": {
            MASTER_SECRET: json.dumps({"username": "admin", "password": MASTER_PASSWORD}),
            SECRETS.db_cloud: json.dumps({"username": "cloud", "password": CLOUD_PASSWORD}),
            SECRETS.cloudstack_keys: json.dumps({"management_key": MANAGEMENT_KEY, "database_key": DATABASE_KEY}),
            SECRETS.admin: json.dumps({"username": "admin", "password": ADMIN_PASSWORD}),
            SECRETS.api_keys: None,
        },
        # The boot-script bucket as `pulumi up` fills it, and the objects the instance's
        # role may read (here every role's: which role may read what is the IAM
        # policy's business, tested in tests/unit).
        "s3": {"objects": {f"{BOOT_BUCKET}/{o.key}": o.content for o in ud.boot_objects(boot_files()).values()},
               "readable": [f"{BOOT_BUCKET}/{o.key}" for o in ud.boot_objects(boot_files()).values()]
               + [f"{BOOT_BUCKET}/packages/*"],
               "writable": [f"{BOOT_BUCKET}/packages/*"], "list_bucket": False},
        "snaps": ["amazon-ssm-agent"],
        "packages": [],
        "versions": {},
        # Versions the repository offers, oldest first (install picks the newest match).
        "repo": {"cloudstack-management": ["4.22.0.0", NEWEST], "cloudstack-agent": ["4.22.0.0", NEWEST],
                 "cloudstack-common": ["4.22.0.0", NEWEST]},
        # Scripted failures, consumed one per call: {"update"|"install"|"snap-install": [stderr, ...]}.
        "failures": {},
        # AWS's RDS certificate bundle of the region (fakes/fake.py curl: served over HTTPS).
        "rds_ca_bundle": {"url": regions.rds_ca_bundle_url("eu-west-1"), "certificates": RDS_BUNDLE,
                          "reachable": True},
        "network": {"gateway_silent_pings": 0, "internet_silent_heads": 0, "pings": 0, "heads": 0},
        # schema: cloud.version exists; schema_complete: the whole schema step ran;
        # marker: cloudstack_ec2.schema_deployed exists; mshost_rows: management
        # servers that ran on it; schema_fails: the next schema step fails halfway.
        "db": {"reachable": True, "schema": False, "schema_complete": False, "marker": False, "mshost_rows": 0,
               "databases": [], "schema_fails": False,
               # rows of cloud.op_dc_link_local_ip_address_alloc for the EC2 link-local
               # services: {"pod": 1, "ip": ..., "nic": None, "reservation": None, "taken": False}
               "link_local": [], "master_password": MASTER_PASSWORD, "statements": [],
               # rows of cloud.configuration written with SQL (fake.configuration_sql):
               # name -> {"category", "instance", "component", "value", "description", ...}
               "configuration": {},
               "users": {},
               # TLS (fakes/fake.py tls_session): the parameter group's require_secure_transport,
               # the server certificate's CA and name; "intercepted": a man in the middle on
               # the path; "captured": the users whose passwords he read.
               "require_secure_transport": True, "ca": DB_CA, "endpoint": DB_HOST,
               "intercepted": False, "captured": []},
        # New TCP connections the fake nft judges at every load of a table (fakes/fake.py
        # nft): the router's, to the management server's UI/API, as it forwards 8080.
        "firewall_probes": {"router_to_api": {"table": "cloudstack_ec2_management", "iif": "vxlan100",
                                              "saddr": "10.100.0.1", "dport": 8080,
                                              "ether": "0a:00:0a:64:00:01"}},
        "api": {"up": False, "admin_user": "admin", "admin_password": "password", "keys_registered": 0,
                # roles, their rules and accounts as the API lists them; user_keys: apikey -> secretkey
                # (what a signed request is checked with); keys_of_user: user id -> its pair's number
                "roles": [], "accounts": [], "user_keys": {}, "keys_of_user": {},
                "restarts": 0,
                "ssh_public_key": MGMT_SSH_KEY,
                "config": {"host": "10.0.0.57", "management.network.cidr": "10.0.0.0/24",
                           "integration.api.port": "0", "control.cidr": "169.254.0.0/16",
                           "system.vm.public.ip.reservation.mode.strictness": "false",
                           # CloudStack's defaults (plugins/integrations/prometheus
                           # PrometheusExporterServer.java)
                           "prometheus.exporter.enable": "false", "prometheus.exporter.allowed.ips": "127.0.0.1",
                           # "" in current releases (ConsoleProxyManager.ConsoleProxyUrlDomain)
                           "consoleproxy.url.domain": ""}},
        # AWS's download bucket of the CloudWatch agent (fakes/fake.py curl, gpg, gpgv):
        # the keys in its key file, whether the package's signature is good.
        "cloudwatch_agent": {"reachable": True, "key_fingerprints": [CLOUDWATCH_AGENT_KEY], "signature_good": True},
        "units": {"enabled": [], "active": [], "masked": [], "failing": []},
        # libvirt's networks (fakes/fake.py virsh): name -> {"forward", "autostart", "active"};
        # installing the agent defines "default" (fakes/fake.py apt_get).
        "libvirt": {"networks": {}},
        # The kernel's values (Documentation/networking/ip-sysctl.rst: forwarding is off by
        # default) of the keys the boot scripts read or set (fakes/fake.py sysctl); a key
        # missing here is one the kernel has not (no IPv6: ipv6.disable=1).
        "sysctl": {"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0",
                   "net.ipv6.conf.default.forwarding": "0"},
        "mounts": [],
        "users": [],
    }


@dataclass
class Run:
    status: int
    output: str
    seconds: float


#: What instances of one deployment share (the AWS account's SSM parameters and secrets, the
#: database): with a `world`, these parts of the fake state are one for every Machine.
SHARED = ("db", "secrets", "ssm", "ssm_meta")


class Machine:
    """A scratch root + fake world for one instance. `world`: a directory Machines share (the
    SHARED parts of their state; fakes/fake.py reads them from $FAKE_WORLD/world.json); the
    first Machine of a world seeds it."""

    def __init__(self, base: Path, world: Path | None = None):
        self.root = base / "root"
        self.state_dir = base / "fake"
        self.bin = base / "bin"
        self.world = world
        for d in (self.root, self.state_dir, self.bin, self.root / "etc"):
            d.mkdir(parents=True, exist_ok=True)
        for name in FAKED_COMMANDS:
            (self.bin / name).symlink_to(FAKE)
        FAKE.chmod(0o755)
        (self.bin / "sleep").symlink_to(FAKE_SLEEP)
        FAKE_SLEEP.chmod(0o755)
        state = initial_state()
        if world is not None:
            world.mkdir(parents=True, exist_ok=True)
            if (world / "world.json").exists():
                state.update(json.loads((world / "world.json").read_text()))
        self.write_state(state)

    # -- fake world
    def state(self) -> dict:
        state = json.loads((self.state_dir / "state.json").read_text())
        if self.world is not None:
            state.update(json.loads((self.world / "world.json").read_text()))
        return state

    def write_state(self, state: dict) -> None:
        state = dict(state)
        if self.world is not None:
            (self.world / "world.json").write_text(json.dumps({k: state.pop(k) for k in SHARED}))
        (self.state_dir / "state.json").write_text(json.dumps(state))

    def update(self, fn) -> None:
        s = self.state()
        fn(s)
        self.write_state(s)

    def upload_boot_scripts(self, files: dict[str, str]) -> None:
        """What `pulumi up` does with changed scripts: their objects (new keys) in the fake bucket."""
        def add(s):
            for o in ud.boot_objects(files).values():
                s["s3"]["objects"][f"{BOOT_BUCKET}/{o.key}"] = o.content
                s["s3"]["readable"].append(f"{BOOT_BUCKET}/{o.key}")
        self.update(add)

    def calls(self) -> list[dict]:
        path = self.state_dir / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def clear_calls(self) -> None:
        (self.state_dir / "calls.jsonl").unlink(missing_ok=True)

    # -- running
    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CSEC2_")}
        # Only system directories after the fakes: a developer's own `aws` (pyenv,
        # ~/.local) must never be reached.
        env.update({"PATH": f"{self.bin}:{SYSTEM_PATH}", "CSEC2_ROOT": str(self.root),
                    "FAKE_STATE": str(self.state_dir), **({"FAKE_WORLD": str(self.world)} if self.world else {})})
        return env

    def run_user_data(self, user_data_base64: str, timeout: float = 60, env: dict | None = None) -> Run:
        script = ud.decode_user_data(user_data_base64)
        return self._run(["bash", "-c", script, "user-data"], timeout, env)

    def rerun(self, script: str, timeout: float = 60, args: tuple | list = ()) -> Run:
        """What cloudstack-ec2-boot.service does at a later boot: /usr/local/sbin/cloudstack-ec2-boot,
        i.e. the launcher, which execs the verified local copy of `script` (fetched by the first run).
        With args: another unit running the installed role script itself (`router.sh forwards`)."""
        lib = self.root / "usr/local/lib/cloudstack-ec2"
        assert (lib / script).is_file(), f"{script} was never installed by stage 2"
        if args:
            return self._run([str(lib / script), *args], timeout)
        assert os.readlink(self.file(ud.BOOT_LINK)) == f"{ud.LIB_DIR}/{ud.STAGE2_LAUNCHER}"
        return self._run([str(lib / ud.STAGE2_LAUNCHER)], timeout)

    def _run(self, argv, timeout, extra_env=None) -> Run:
        start = time.monotonic()
        p = subprocess.run(argv, env={**self.env(), **(extra_env or {})}, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return Run(p.returncode, p.stdout, time.monotonic() - start)

    def file(self, path: str) -> Path:
        return self.root / path.lstrip("/")


def publish_anchor(machine: "Machine", name: str, value: str, type_: str = "SecureString",
                   key: str | None = ANCHOR_KEY) -> None:
    """SSM parameter `name` as a writer left it: by default as the management server writes
    a trust anchor (a SecureString under the anchor key)."""
    def put(s):
        s["ssm"][name] = value
        s["ssm_meta"][name] = {"Type": type_, "KeyId": key if type_ == "SecureString" else None}
    machine.update(put)


def publish_for_hosts(machine: "Machine", version: str = "4.22.0.0", key: str = MGMT_SSH_KEY) -> None:
    """What the management server publishes for the hosts: its SSH key and package version."""
    publish_anchor(machine, f"{PREFIX}/management-ssh-public-key", key)
    publish_anchor(machine, f"{PREFIX}/cloudstack-version", version)


#: The marker lines of the authorized_keys block a KVM host owns (userdata/kvm-host.sh).
KEY_BLOCK = "cloudstack-ec2 management server key (replaced at every boot)"


def key_block(key: str = MGMT_SSH_KEY) -> str:
    """authorized_keys as a KVM host leaves it with only the management server's `key`."""
    return f"# BEGIN {KEY_BLOCK}\n{key}\n# END {KEY_BLOCK}\n"


def render(boot) -> str:
    files = boot_files()
    if isinstance(boot, ud.ManagementBoot):
        return ud.render_management_user_data(boot, files=files)
    if isinstance(boot, ud.KvmHostBoot):
        return ud.render_kvm_host_user_data(boot, files=files)
    return ud.render_router_user_data(boot, files=files)


def index_of(calls, predicate, what: str) -> int:
    for i, c in enumerate(calls):
        if predicate(c):
            return i
    raise AssertionError(f"no call {what} in {[c['cmd'] + ' ' + ' '.join(c['args'][:3]) for c in calls]}")


def is_apt(verb, package=None):
    """An apt-get call of VERB (update/install), installing PACKAGE (with or without =version)."""
    def predicate(c):
        return c["cmd"] == "apt-get" and verb in c["args"] and (
            package is None or any(a.split("=")[0] == package for a in c["args"]))
    return predicate


def is_cmd(name, *first_args):
    def predicate(c):
        return c["cmd"] == name and c["args"][:len(first_args)] == list(first_args)
    return predicate




def is_s3_cp(c) -> bool:
    """An `aws s3 cp` call (the launcher fetching the role script)."""
    args = c["args"]
    return c["cmd"] == "aws" and "s3" in args and args[args.index("s3") + 1:][:1] == ["cp"]


def package_file(name: str, version: str) -> str:
    """A package file as the fake apt-get download writes it and the fake dpkg-deb -f reads it
    (its control fields; fakes/fake.py deb_control)."""
    return f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"


def package_copy(machine, version: str, file_version: str = "") -> None:
    """The deployment's copy of cloudstack-agent and cloudstack-common under packages/<version>/
    as the first management server uploads it; `file_version`: files of another version there."""
    def add(s):
        for name in ("cloudstack-agent", "cloudstack-common"):
            s["s3"]["objects"][f"{BOOT_BUCKET}/packages/{version}/{name}.deb"] = \
                package_file(name, file_version or version)
    machine.update(add)
