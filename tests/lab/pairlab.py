"""The lab (netlab.py) with a router pair instead of one router.

    router0  10.99.1.10 (console .11, tenants .12)   overlay 10.100.63.254   priority 150
    router1  10.99.1.13 (console .14, tenants .15)   overlay 10.100.63.255   priority 100
    gateway  10.100.0.1: keepalived's VRRP address, on the active router's cloudbr0

Each router runs the project's own scripts from a scratch root, as stage 2 installs
them: overlay-network.sh (from netlab.py), `router.sh keepalived-config` writes its
keepalived.conf from the boot.env and overlay.env the renderer writes
(components/boot), and Debian's keepalived runs it, calling `router.sh vrrp STATE`. The
EC2 side is ec2_standin.py in the VPC router's namespace: moto in server mode (the
routers' AWS CLI reaches it through AWS_ENDPOINT_URL_EC2, the CLI's own setting), IMDSv2,
and the data plane following moto's route table and Elastic IP associations.

The scratch roots live under /run: keepalived runs scripts only from paths no
non-root user can write (enable_script_security), which /tmp is not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from components import boot as ud

from .netlab import (
    MGMT, OVERLAY_MTU, OVERLAY_PREFIX, OVERLAY_CIDR, REPO, ROUTER, SUBNET_CIDR, TOOLS, UI_PORT, VPC_CIDR,
    VXLAN_GROUP, VXLAN_ID, ELASTIC_IP, CONSOLE_EIP, TENANT_EIP, Instance, Lab, LabError, Process, host_instance)

STANDIN = Path(__file__).resolve().parent / "ec2_standin.py"
MOTO = ("10.99.0.10", 5000)
GATEWAY = ROUTER.overlay  # 10.100.0.1: the one-router lab's router address, the pair's VRRP address
ROUTERS = (Instance("router0", "10.99.1.10", "10.100.63.254", "router"),
           Instance("router1", "10.99.1.13", "10.100.63.255", "router"))
#: Router 0 as a stack with one router launched it: the gateway address is its own.
ROUTER0_SINGLE = Instance("router0", "10.99.1.10", GATEWAY, "router")
SECONDARIES = {"router0": ("10.99.1.11", "10.99.1.12"), "router1": ("10.99.1.14", "10.99.1.15")}
TENANT = "10.100.128.5"  # the public range (block 2): a tenant's virtual router
ROUTE_TABLES = 2
#: Bounds of every wait of the lab.
SETTLE_SECONDS = 60
#: The period of each router's `router.sh reassert` (cloudstack-ec2-router-pair.timer runs
#: it every TIMER_SECONDS on EC2; the lab runs the same script more often, to see several
#: periods).
REASSERT_SECONDS = 4
TIMER_SECONDS = 30


def built(lab: "PairLab", ready: Callable[["PairLab"], None]):
    """A module fixture's body: `lab` built and `ready(lab)` (its waits) passed, yielded, torn
    down after; a failure to build fails the tests with the routers' logs."""
    try:
        lab.build()
        ready(lab)
    except (LabError, OSError, subprocess.SubprocessError) as error:
        logs = lab.logs()
        lab.teardown()
        pytest.fail(f"building the lab failed: {error}\n{logs}", pytrace=False)
    yield lab
    lab.teardown()


class PairLab(Lab):
    def __init__(self, name: str = "pair", router0_single: bool = False) -> None:
        """`router0_single`: router 0 runs the one-router boot it was launched with before the
        stack had a pair (the gateway address its own, no keepalived), as after routerCount
        1 -> 2 until it is replaced; `name` keeps two such labs apart."""
        super().__init__()
        # Namespaces of its own (csl-<pid>-<name>-*): the session's deployment lab (conftest
        # `lab`) may be up in the same process with csl-<pid>-sub and the others.
        self.prefix = f"{self.prefix}-{name}"
        self.router0_single = router0_single
        self.routers = (ROUTER0_SINGLE if router0_single else ROUTERS[0], ROUTERS[1])
        self.base = Path("/run") / self.prefix
        self.status_path = self.base / "ec2-status.json"
        self.keepalived: dict[str, Process] = {}
        self.timers: dict[str, Process] = {}
        self.timer_seconds = REASSERT_SECONDS
        self.ids: dict = {}

    # --- building -------------------------------------------------------------

    def build(self, hosts: int = 1) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
        self.base.mkdir(mode=0o700, parents=True)
        self.build_underlay()
        # The one-router lab's IMDS stand-in makes room for ec2_standin.py's.
        for process in list(self.processes):
            if "imds" in process.popen.args:
                self.stop(process)
        self.ip("vpcr", "addr", "add", f"{MOTO[0]}/32", "dev", "lo")
        for address in SECONDARIES["router1"]:  # EC2 delivers each ENI's addresses to it
            self.ip("vpcr", "route", "add", f"{address}/32", "via", ROUTERS[1].underlay)
        self.start_ec2()
        for inst in (*self.routers, MGMT, *(host_instance(i) for i in range(hosts))):
            self.add_instance(inst)
        self.mgmt_ui = self.spawn("mgmt", sys.executable, str(TOOLS), "whoami", "mgmt-ui", "0.0.0.0", str(UI_PORT))
        self.plug_tenant("tenant", "host0", TENANT)
        for inst in self.routers:
            self.install_router(inst)
        for inst in self.routers:
            if inst is ROUTER0_SINGLE:
                continue
            if self.router0_single:
                # The boot's last step before keepalived: hold back beside a router without the pair.
                self.run(inst.name, str(self.root(inst.name) / "usr/local/lib/cloudstack-ec2/router.sh"), "reassert",
                         env=self.script_env(inst.name), check=False, timeout=SETTLE_SECONDS)
            self.start_keepalived(inst.name)
            self.start_timer(inst.name)

    def start_ec2(self) -> None:
        config = {
            "moto": list(MOTO), "vpc": VPC_CIDR, "subnet": SUBNET_CIDR, "overlay": OVERLAY_CIDR,
            "route_tables": ROUTE_TABLES, "igw_dev": "vr-inet",
            "eips": {"infrastructure": ELASTIC_IP, "console": CONSOLE_EIP, "tenant": TENANT_EIP},
            "routers": [{"primary": r.underlay, "console": SECONDARIES[r.name][0], "tenant": SECONDARIES[r.name][1],
                         "mac": f"0a:00:00:00:00:{i:02x}", "user_data": self.launch_user_data(r)}
                        for i, r in enumerate(self.routers)],
        }
        (self.base / "ec2.json").write_text(json.dumps(config))
        self.spawn("vpcr", sys.executable, str(STANDIN), str(self.base / "ec2.json"), str(self.status_path),
                   ready_timeout=60)
        self.ids = self.ec2()

    def overlay_env(self, inst: Instance) -> dict[str, str]:
        env = super().overlay_env(inst)
        if inst.name in SECONDARIES:
            env["CONSOLE_ADDRESS"], env["TENANT_ADDRESS"] = SECONDARIES[inst.name]
        return env

    def plug_tenant(self, short: str, host: str, address: str) -> None:
        """A namespace whose NIC is a port of `host`'s cloudbr0, like a VM's tap device."""
        self.add_ns(short)
        self.veth(host, f"vm-{short}", short, "eth0", OVERLAY_MTU)
        self.ip(host, "link", "set", f"vm-{short}", "address", "fe:54:00:00:00:01")
        self.ip(host, "link", "set", f"vm-{short}", "master", "cloudbr0")
        self.ip(short, "addr", "add", f"{address}/{OVERLAY_PREFIX}", "dev", "eth0")
        self.ip(short, "route", "add", "default", "via", GATEWAY)

    def launch_user_data(self, inst: Instance) -> str:
        """The user data (base64) the router's instance is launched with, as EC2 keeps it. The
        IDs in it are stand-ins: EC2 assigns the real ones only when the stand-in seeds it,
        and what a router reads of the other's user data is only whether it has a pair."""
        ids = {"tables": ("rtb-0123456789abcdef0",), "allocations": {
            role: f"eipalloc-0123456789abcdef{i}" for i, role in enumerate(("infrastructure", "console", "tenant"))}}
        return ud.render_router_user_data(self.router_boot(inst, ids))

    def router_boot(self, inst: Instance, ids: dict | None = None) -> ud.RouterBoot:
        ids = ids or self.ids
        index = [r.name for r in ROUTERS].index(inst.name)
        console, tenant = SECONDARIES[inst.name]
        env = self.overlay_env(inst)
        overlay = ud.OverlayConfig(
            role="router", vxlan_id=VXLAN_ID, vxlan_group=VXLAN_GROUP, overlay_address=env["OVERLAY_ADDRESS"],
            overlay_mtu=OVERLAY_MTU, vpc_cidr=VPC_CIDR, router_dnat=(env["ROUTER_DNAT"],), storage_cidr=SUBNET_CIDR,
            console_address=console, tenant_address=tenant)
        pair = None if inst is ROUTER0_SINGLE else ud.RouterPairBoot(
            index=index, peer_private_ip=ROUTERS[1 - index].underlay, route_table_ids=tuple(ids["tables"]),
            eip_allocations=ids["allocations"])
        return ud.RouterBoot(aws_region="eu-west-1", prefix="/cloudstack-ec2/lab", fqdn=f"{inst.name}.lab.internal",
                             overlay=overlay, boot_bucket="cloudstack-ec2-lab-20261206000000000000000001", pair=pair)

    def root(self, name: str) -> Path:
        return self.base / name

    def install_router(self, inst: Instance) -> None:
        """What the user data and stage 2 leave on the router: the settings files and
        the scripts (mode 0755), then `router.sh keepalived-config` as the boot runs it."""
        root, boot = self.root(inst.name), self.router_boot(inst)
        lib, etc = root / "usr/local/lib/cloudstack-ec2", root / "etc/cloudstack-ec2"
        for directory in (lib, etc, root / "etc/keepalived", root / "run", root / "var/lib/cloudstack-ec2"):
            directory.mkdir(parents=True, exist_ok=True)
        for name in ("router.sh", "common.sh", "library.sh"):
            shutil.copy(REPO / "userdata" / name, lib / name)
            (lib / name).chmod(0o755)
        for name, env in (("boot.env", ud.router_environment(boot)), ("overlay.env", ud.overlay_environment(boot.overlay))):
            (etc / name).write_text("".join(f'{k}="{v}"\n' for k, v in env.items()))
        if boot.pair is None:
            return
        conf = self.run(inst.name, str(lib / "router.sh"), "keepalived-config", env=self.script_env(inst.name))
        (root / "etc/keepalived/keepalived.conf").write_text(conf.stdout)

    def script_env(self, name: str) -> dict[str, str]:
        """The routers' scripts' environment: their root, and the AWS CLI's own settings
        for the lab's EC2 endpoint (AWS_ENDPOINT_URL_EC2) and moto's credentials."""
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("CSEC2_", "AWS_"))}
        return {**keep, "CSEC2_ROOT": str(self.root(name)), "AWS_ENDPOINT_URL_EC2": f"http://{MOTO[0]}:{MOTO[1]}",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

    # --- operating -------------------------------------------------------------

    def start_keepalived(self, name: str) -> None:
        root = self.root(name)
        log = open(root / "keepalived.log", "a")
        popen = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(name), "keepalived", "--dont-fork", "--log-console", "--log-detail",
             "-f", str(root / "etc/keepalived/keepalived.conf"), "-p", str(root / "run/keepalived.pid"),
             "-r", str(root / "run/vrrp.pid")],
            stdout=log, stderr=subprocess.STDOUT, env=self.script_env(name), start_new_session=True)
        process = Process(popen)
        self.processes.append(process)
        self.keepalived[name] = process

    def start_timer(self, name: str) -> None:
        """cloudstack-ec2-router-pair.timer's part: `router.sh reassert` every timer_seconds,
        the first a period after the start, as the timer's OnUnitActiveSec (a timer already
        running is stopped first)."""
        if name in self.timers:
            old = self.timers.pop(name)
            os.killpg(old.popen.pid, signal.SIGKILL)
            old.popen.wait(5)
            self.processes.remove(old)
        root = self.root(name)
        log = open(root / "timer.log", "a")
        popen = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(name), "bash", "-c", 'while :; do sleep "$1"; "$0" reassert; done',
             str(root / "usr/local/lib/cloudstack-ec2/router.sh"), str(self.timer_seconds)],
            stdout=log, stderr=subprocess.STDOUT, env=self.script_env(name), start_new_session=True)
        process = Process(popen)
        self.processes.append(process)
        self.timers[name] = process

    def crash(self, name: str) -> float:
        """The router dies: keepalived killed (no priority-0 advert), its timer with it, and
        its links down. Returns the moment of the loss (epoch seconds)."""
        process = self.keepalived.pop(name)
        loss = time.time()
        for p in (process, self.timers.pop(name)):
            os.killpg(p.popen.pid, signal.SIGKILL)
            p.popen.wait(5)
            self.processes.remove(p)
        for dev in ("ens5", "ethovl0", "cloudbr0"):
            self.ip(name, "link", "set", dev, "down")
        return loss

    def partition(self, cut: bool) -> None:
        """VRRP between the two routers cut (or back) on the subnet: every other packet,
        the routers' EC2 API calls included, still passes."""
        table = "table bridge pair_partition {\n    chain forward {\n" \
                "        type filter hook forward priority filter; policy accept;\n" \
                "        ip protocol vrrp drop\n    }\n}\n"
        if cut:
            self.run("sub", "nft", "-f", "-", input=table)
        else:
            self.run("sub", "nft", "delete", "table", "bridge", "pair_partition")

    def restore(self, name: str) -> None:
        """The router comes back as after a reboot: links up, the overlay unit's script
        (it puts back the default route the kernel dropped with the link), keepalived.
        A reboot loses runtime addresses: the gateway address keepalived had put on
        cloudbr0 goes first."""
        self.ip(name, "addr", "del", f"{GATEWAY}/32", "dev", "cloudbr0", check=False)
        for dev in ("ens5", "ethovl0", "cloudbr0"):
            self.ip(name, "link", "set", dev, "up")
        result = self.overlay_script(self.instances[name])
        if result.returncode:
            raise LabError(f"overlay-network.sh on {name}: {result.stdout}{result.stderr}")
        self.start_keepalived(name)
        self.start_timer(name)

    # --- observation -------------------------------------------------------------

    def gateways(self) -> list[str]:
        """The live routers that answer for the gateway address on the overlay: keepalived's
        address, or a router without the pair's own."""
        return [r.name for r in ROUTERS
                if f" {GATEWAY}/" in self.ip(r.name, "-4", "-o", "addr", "show", "dev", "cloudbr0").stdout
                and "state UP" in self.ip(r.name, "-o", "link", "show", "dev", "cloudbr0").stdout]

    def holders(self) -> list[str]:
        """The live routers with the gateway address on their cloudbr0 (a crashed one,
        links down, answers nobody, whatever its interfaces still carry)."""
        return [r.name for r in ROUTERS
                if f" {GATEWAY}/32 " in self.ip(r.name, "-4", "-o", "addr", "show", "dev", "cloudbr0").stdout
                and "state UP" in self.ip(r.name, "-o", "link", "show", "dev", "cloudbr0").stdout]

    def ec2(self) -> dict:
        """ec2_standin.py's last report: IDs, every route table's target, every allocation's ENI."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            if self.status_path.exists():
                return json.loads(self.status_path.read_text())
            time.sleep(0.1)
        raise LabError(f"no EC2 status in {self.status_path}")

    def eni(self, name: str) -> str:
        return self.ids["enis"][[r.name for r in ROUTERS].index(name)]

    def aws_side_on(self) -> set[str]:
        """Which routers' ENIs the route tables and the Elastic IPs point at."""
        status = self.ec2()
        names = {eni: r.name for eni, r in zip(status["enis"], ROUTERS)}
        return {names.get(e, e) for e in [*status["routes"].values(), *status["addresses"].values()]}

    def wait_for(self, what: str, predicate, seconds: float = SETTLE_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise LabError(f"{what} not within {seconds} s; holders {self.holders()}, AWS side on {self.aws_side_on()};"
                       f" logs: {self.logs()}")

    def pair_log(self, name: str) -> str:
        path = self.root(name) / "var/log/cloudstack-ec2-router-pair.log"
        return path.read_text() if path.exists() else ""

    def logs(self) -> str:
        out = []
        for r in ROUTERS:
            for name in ("keepalived.log", "var/log/cloudstack-ec2-router-pair.log"):
                path = self.root(r.name) / name
                if path.exists():
                    out.append(f"--- {r.name} {name}\n" + "\n".join(path.read_text().splitlines()[-15:]))
        return "\n".join(out)

    def teardown(self) -> None:
        super().teardown()
        shutil.rmtree(self.base, ignore_errors=True)
