"""An emulation of the EC2 side of the design, built from network namespaces.

    far (192.0.2.20) ══ internet (203.0.113.2) ── vpcr ── db/client subnet 10.99.2.0/24
    jumbo LAN, MTU 9001   MTU 1500 to vpcr           │      (db 10.99.2.10)
                               "EC2 VPC router": routes the subnets, the overlay
                               CIDR -> the router's underlay address, an internet
                               gateway (EIP 198.51.100.10 <-> router only, and the
                               console EIP 198.51.100.11 <-> the router's second
                               address 10.99.1.11, the tenants' EIP 198.51.100.12
                               <-> its third 10.99.1.12; 1500 bytes; sends and passes no
                               ICMP "fragmentation needed"), the VPC resolver
                               10.99.0.2 and IMDS 169.254.169.254
    CloudStack subnet 10.99.1.0/24: bridge "br0" in namespace "sub"
        = the subnet plus the Transit Gateway multicast domain (IGMP snooping;
          the querier asks in IGMPv3 and v3 reports are dropped, so only hosts
          forced to IGMPv2 register; multicast over 8500 bytes or fragmented
          is dropped)
        + EC2's source/destination check on every instance port but the router's
       ├─ router  10.99.1.10   overlay 10.100.0.1   (overlay-network.sh router)
       ├─ mgmt    10.99.1.20   overlay 10.100.0.2   (member)
       ├─ hostN   10.99.1.3N   overlay 10.100.0.1N  (member)
       └─ tm      10.99.1.50   not on the overlay (the source's "TroubleMaker")

Every namespace is named csl-<pid>-<short>; only those are ever touched.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "userdata" / "overlay-network.sh"
TOOLS = Path(__file__).resolve().parent / "labnet_tools.py"

VPC_CIDR = "10.99.0.0/16"
SUBNET_GATEWAY = "10.99.1.1"
SUBNET_PREFIX = 24
DB_GATEWAY = "10.99.2.1"
DB_ADDRESS = "10.99.2.10"
RESOLVER = "10.99.0.2"
IMDS = "169.254.169.254"
INTERNET_VPCR = "203.0.113.1"
INTERNET_CLIENT = "203.0.113.2"
INTERNET_MTU = 1500  # the internet gateway's limit (and the script's default)
FAR_GATEWAY = "192.0.2.1"
FAR_HOST = "192.0.2.20"  # an internet host on a jumbo LAN behind "internet"
ELASTIC_IP = "198.51.100.10"
#: The router's console address: the second private IPv4 of its ENI, with an Elastic
#: IP of its own (components/model/consoles.py). Not configured on the router's interface:
#: EC2 delivers it to the ENI, as the lab's VPC router does (a route to the ENI).
CONSOLE_ADDRESS = "10.99.1.11"
CONSOLE_EIP = "198.51.100.11"
#: The router's tenants' address: the third private IPv4 of its ENI, with an Elastic IP of
#: its own (overlay-network.sh TENANT_ADDRESS), delivered to the ENI like the console address.
TENANT_ADDRESS = "10.99.1.12"
TENANT_EIP = "198.51.100.12"
OVERLAY_CIDR = "10.100.0.0/16"
OVERLAY_PREFIX = 16
VXLAN_ID = 100
VXLAN_GROUP = "239.255.42.1"
OVERLAY_MTU = 8450
UNDERLAY_MTU = 9001  # EC2's jumbo frames inside a VPC
TGW_MAX_PACKET = 8500
WHOAMI_PORT = 7000
UI_PORT = 8080
DB_PORT = 3306
INTERNET_PORT = 80
DNS_NAME = "db.lab.internal"

# The router's address classes, as components/boot/overlay.py renders them from
# components/model/ipplan.py for the lab's overlay and subnet.
INFRA_CIDR = "10.100.0.0/18"
SYSTEM_RANGE = "10.100.64.1-10.100.64.250"
SUBNET_CIDR = "10.99.1.0/24"
ROUTER_ISOLATION = {"INFRA_CIDR": INFRA_CIDR, "SYSTEM_RANGE": SYSTEM_RANGE, "STORAGE_CIDR": SUBNET_CIDR}

REQUIRED_TOOLS = ("ip", "nft", "ping", "bridge", "sysctl")
KERNEL_MODULES = ("veth", "bridge", "vxlan", "nf_tables", "nft_nat", "nf_nat", "nft_chain_nat", "nf_conntrack")


class LabError(RuntimeError):
    pass


@dataclass(frozen=True)
class Instance:
    name: str
    underlay: str
    overlay: str | None  # None: not on the overlay
    role: str | None  # router | member | None

    @property
    def port(self) -> str:
        return f"p-{self.name}"


def host_instance(index: int) -> Instance:
    return Instance(f"host{index}", f"10.99.1.{30 + index}", f"10.100.0.{10 + index}", "member")


ROUTER = Instance("router", "10.99.1.10", "10.100.0.1", "router")
MGMT = Instance("mgmt", "10.99.1.20", "10.100.0.2", "member")
TROUBLEMAKER = Instance("tm", "10.99.1.50", None, None)


@dataclass
class Process:
    popen: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)


class Lab:
    def __init__(self) -> None:
        self.prefix = f"csl-{os.getpid()}"
        self.namespaces: list[str] = []
        self.processes: list[Process] = []
        self.instances: dict[str, Instance] = {}
        self.srcdst_exempt: set[str] = set()  # instance names with the check off
        self.resolver: Process | None = None
        # Servers that print the MSS option of every SYN they receive:
        self.db_server: Process | None = None
        self.far_server: Process | None = None
        self.mgmt_ui: Process | None = None
        #: Extra variables of the router's overlay script (added to overlay_env), e.g.
        #: TENANT_ADDRESS: every later run of the script, restores included, keeps them.
        self.router_env: dict[str, str] = {}

    # --- plumbing -----------------------------------------------------------

    def ns(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def sh(self, *cmd: str, check: bool = True, timeout: float = 20, env: dict | None = None,
           input: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, input=input)
        if check and result.returncode != 0:
            raise LabError(f"{' '.join(cmd)} -> {result.returncode}\n{result.stdout}{result.stderr}")
        return result

    def run(self, short: str, *cmd: str, **kwargs) -> subprocess.CompletedProcess:
        return self.sh("ip", "netns", "exec", self.ns(short), *cmd, **kwargs)

    def ip(self, short: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.sh("ip", "-n", self.ns(short), *args, **kwargs)

    def sysctl(self, short: str, key: str, value: str | int) -> None:
        self.run(short, "sysctl", "-qw", f"{key}={value}")

    def add_ns(self, short: str) -> None:
        self.sh("ip", "netns", "add", self.ns(short))
        self.namespaces.append(self.ns(short))
        self.ip(short, "link", "set", "lo", "up")
        # Ubuntu's (systemd's) default: loose reverse-path filtering.
        self.sysctl(short, "net.ipv4.conf.all.rp_filter", 2)
        self.sysctl(short, "net.ipv4.conf.default.rp_filter", 2)

    def del_ns(self, short: str) -> None:
        name = self.ns(short)
        self.sh("ip", "netns", "del", name, check=False)
        if name in self.namespaces:
            self.namespaces.remove(name)

    def veth(self, a_ns: str, a_name: str, b_ns: str, b_name: str, mtu: int) -> None:
        self.ip(a_ns, "link", "add", a_name, "mtu", str(mtu), "type", "veth",
                "peer", "name", b_name, "mtu", str(mtu), "netns", self.ns(b_ns))
        self.ip(a_ns, "link", "set", a_name, "up")
        self.ip(b_ns, "link", "set", b_name, "up")

    def spawn(self, short: str, *cmd: str, ready_timeout: float = 10) -> Process:
        popen = subprocess.Popen(["ip", "netns", "exec", self.ns(short), *cmd], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, bufsize=1)
        process = Process(popen)
        self.processes.append(process)

        def follow() -> None:
            for line in popen.stdout:
                line = line.rstrip("\n")
                process.lines.append(line)
                if line == "READY":
                    process.ready.set()

        threading.Thread(target=follow, daemon=True).start()
        if not process.ready.wait(ready_timeout):
            raise LabError(f"{' '.join(cmd)} in {short} not ready after {ready_timeout}s: {process.lines}")
        return process

    def tool(self, short: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(short, sys.executable, str(TOOLS), *args, **kwargs)

    def stop(self, process: Process) -> None:
        if process.popen.poll() is None:
            process.popen.terminate()
            try:
                process.popen.wait(5)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(5)
        if process in self.processes:
            self.processes.remove(process)

    def teardown(self) -> None:
        for process in list(self.processes):
            self.stop(process)
        for name in list(reversed(self.namespaces)):
            self.sh("ip", "netns", "del", name, check=False)
        self.namespaces.clear()

    def reap_stale(self) -> None:
        """Delete namespaces a killed lab run left behind: csl-<pid>-* whose pid
        is gone (finalizers do not run on SIGKILL). Never anything else."""
        listing = self.sh("ip", "netns", "list", check=False).stdout
        for name in re.findall(r"^(csl-(\d+)-\S+)", listing, re.M):
            if not Path(f"/proc/{name[1]}").exists():
                self.sh("ip", "netns", "del", name[0], check=False)

    # --- the EC2 side -------------------------------------------------------

    def build_underlay(self) -> None:
        missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
        if missing:
            raise LabError(f"missing tools {missing}: install iproute2 nftables iputils-ping (.ci/apt-packages.txt)")
        if shutil.which("modprobe"):
            # Best effort: a modular kernel autoloads these on first use anyway,
            # a kernel with them built in has nothing to load.
            for module in KERNEL_MODULES:
                self.sh("modprobe", "-q", module, check=False)
        self.reap_stale()
        for short in ("sub", "vpcr", "db", "inet", "far"):
            self.add_ns(short)
        self.ip("sub", "link", "add", "br0", "mtu", str(UNDERLAY_MTU), "type", "bridge", "stp_state", "0",
                "forward_delay", "0", "mcast_snooping", "1", "mcast_querier", "1", "mcast_igmp_version", "3")
        self.ip("sub", "link", "set", "br0", "up")

        # The VPC router: subnet gateways, no ICMP redirects (EC2 sends none).
        self.veth("sub", "p-vpcr", "vpcr", "vr-sub", UNDERLAY_MTU)
        self.ip("sub", "link", "set", "p-vpcr", "master", "br0")
        self.veth("vpcr", "vr-db", "db", "ens5", UNDERLAY_MTU)
        self.veth("vpcr", "vr-inet", "inet", "eth0", INTERNET_MTU)
        # Jumbo frames beyond the internet gateway's 1500 bytes: a far host that
        # announces a big MSS (9001 - 40) and sends segments that big.
        self.veth("inet", "eth1", "far", "eth0", UNDERLAY_MTU)
        for dev, address in (("vr-sub", f"{SUBNET_GATEWAY}/{SUBNET_PREFIX}"), ("vr-db", f"{DB_GATEWAY}/24"),
                             ("vr-inet", f"{INTERNET_VPCR}/24"), ("lo", f"{RESOLVER}/32"), ("lo", f"{IMDS}/32")):
            self.ip("vpcr", "addr", "add", address, "dev", dev)
        for key in ("net.ipv4.ip_forward", ):
            self.sysctl("vpcr", key, 1)
        for dev in ("all", "vr-sub"):
            self.sysctl("vpcr", f"net.ipv4.conf.{dev}.send_redirects", 0)
        # The VPC route table entry the design needs: overlay CIDR -> router's ENI.
        self.ip("vpcr", "route", "add", OVERLAY_CIDR, "via", ROUTER.underlay)
        # EC2 delivers each private address of an ENI to that ENI: the router's second
        # address reaches the router's MAC, though no interface carries it.
        self.ip("vpcr", "route", "add", f"{CONSOLE_ADDRESS}/32", "via", ROUTER.underlay)
        self.ip("vpcr", "route", "add", f"{TENANT_ADDRESS}/32", "via", ROUTER.underlay)
        self.ip("vpcr", "route", "add", f"{FAR_HOST}/32", "via", INTERNET_CLIENT)
        # The internet gateway: the router's three addresses map 1:1 to their Elastic
        # IPs; nothing else in the VPC has a public address.
        self.run("vpcr", "nft", "-f", "-", input=f"""
table ip ec2_igw {{
    chain prerouting {{ type nat hook prerouting priority dstnat; policy accept;
        iifname "vr-inet" ip daddr {ELASTIC_IP} dnat to {ROUTER.underlay}
        iifname "vr-inet" ip daddr {CONSOLE_EIP} dnat to {CONSOLE_ADDRESS}
        iifname "vr-inet" ip daddr {TENANT_EIP} dnat to {TENANT_ADDRESS}
    }}
    chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;
        oifname "vr-inet" ip saddr {ROUTER.underlay} snat to {ELASTIC_IP}
        oifname "vr-inet" ip saddr {CONSOLE_ADDRESS} snat to {CONSOLE_EIP}
        oifname "vr-inet" ip saddr {TENANT_ADDRESS} snat to {TENANT_EIP}
    }}
    chain forward {{ type filter hook forward priority filter; policy accept;
        oifname "vr-inet" ip saddr != {{ {ROUTER.underlay}, {CONSOLE_ADDRESS}, {TENANT_ADDRESS} }} counter drop
        iifname "vr-inet" icmp type destination-unreachable icmp code frag-needed counter name "pmtud_dropped" drop
        oifname "vr-inet" icmp type destination-unreachable icmp code frag-needed counter name "pmtud_dropped" drop
    }}
    # Path-MTU discovery across the internet gateway cannot be relied on: the
    # lab's sends no "fragmentation needed" for packets over 1500 bytes (they
    # are just dropped), and passes none. Only the MSS clamp then helps.
    counter pmtud_dropped {{ }}
    chain output {{ type filter hook output priority filter; policy accept;
        icmp type destination-unreachable icmp code frag-needed counter name "pmtud_dropped" drop
    }}
}}
""")

        self.ip("db", "addr", "add", f"{DB_ADDRESS}/24", "dev", "ens5")
        self.ip("db", "route", "add", "default", "via", DB_GATEWAY)
        self.ip("inet", "addr", "add", f"{INTERNET_CLIENT}/24", "dev", "eth0")
        self.ip("inet", "route", "add", "198.51.100.0/24", "via", INTERNET_VPCR)  # public space only
        self.ip("inet", "addr", "add", f"{FAR_GATEWAY}/24", "dev", "eth1")
        self.sysctl("inet", "net.ipv4.ip_forward", 1)
        self.ip("far", "addr", "add", f"{FAR_HOST}/24", "dev", "eth0")
        self.ip("far", "route", "add", "default", "via", FAR_GATEWAY)

        self.db_server = self.spawn("db", sys.executable, str(TOOLS), "whoami", "db", "0.0.0.0", str(DB_PORT),
                                    "sniff")
        self.spawn("inet", sys.executable, str(TOOLS), "whoami", "internet", "0.0.0.0", str(INTERNET_PORT))
        self.far_server = self.spawn("far", sys.executable, str(TOOLS), "whoami", "far", "0.0.0.0",
                                     str(INTERNET_PORT), "sniff")
        self.spawn("vpcr", sys.executable, str(TOOLS), "whoami", "imds", IMDS, "80")
        self.resolver = self.spawn("vpcr", sys.executable, str(TOOLS), "dns", VPC_CIDR, RESOLVER, "53",
                                   f"{DNS_NAME}={DB_ADDRESS}")

    def apply_srcdst_check(self) -> None:
        """(Re)write the subnet bridge's filter: EC2's source/destination check
        on every instance port except exempt ones (the router's), plus the
        Transit Gateway's limits on multicast. One atomic transaction."""
        rules = []
        for inst in self.instances.values():
            if inst.role == "router" or inst.name in self.srcdst_exempt:
                continue
            counter = inst.port.replace("-", "_")
            rules.append(f'iifname "{inst.port}" ip saddr != {inst.underlay} counter name "{counter}_out" drop')
            rules.append(f'oifname "{inst.port}" ip daddr != {inst.underlay} counter name "{counter}_in" drop')
        counters = "".join(
            f"    counter {i.port.replace('-', '_')}_{d} {{ }}\n"
            for i in self.instances.values() for d in ("out", "in")
        )
        body = "\n        ".join(rules)
        self.run("sub", "nft", "-f", "-", input=f"""
table bridge ec2_subnet
delete table bridge ec2_subnet
table bridge ec2_subnet {{
{counters}    counter tgw_jumbo {{ }}
    counter tgw_too_big {{ }}
    counter igmpv3_dropped {{ }}
    chain prerouting {{ type filter hook prerouting priority filter; policy accept;
        # The Transit Gateway speaks IGMPv2 only: drop v3 reports before the
        # bridge's snooping sees them.
        igmp type membership-report-v3 counter name "igmpv3_dropped" drop
    }}
    chain forward {{ type filter hook forward priority filter; policy accept;
        ether type != ip accept
        ip daddr 224.0.0.0/4 ip length > {TGW_MAX_PACKET} counter name "tgw_too_big" drop
        ip daddr 224.0.0.0/4 ip frag-off & 0x3fff != 0 drop
        ip daddr 224.0.0.0/4 ip length {TGW_MAX_PACKET} counter name "tgw_jumbo" accept
        ip daddr 224.0.0.0/4 accept
        {body}
    }}
}}
""")

    def counter(self, name: str, short: str = "sub", table: str = "bridge ec2_subnet") -> int:
        out = self.run(short, "nft", "-j", "list", "counter", *table.split(), name).stdout
        for item in json.loads(out)["nftables"]:
            if "counter" in item:
                return item["counter"]["packets"]
        raise LabError(f"no counter {name}")

    def set_srcdst_check(self, name: str, enabled: bool) -> None:
        (self.srcdst_exempt.discard if enabled else self.srcdst_exempt.add)(name)
        self.apply_srcdst_check()

    def add_instance(self, inst: Instance) -> None:
        self.add_ns(inst.name)
        self.veth("sub", inst.port, inst.name, "ens5", UNDERLAY_MTU)
        self.ip("sub", "link", "set", inst.port, "master", "br0")
        self.ip(inst.name, "addr", "add", f"{inst.underlay}/{SUBNET_PREFIX}", "dev", "ens5")
        self.ip(inst.name, "route", "add", "default", "via", SUBNET_GATEWAY)
        self.instances[inst.name] = inst
        self.apply_srcdst_check()
        self.spawn(inst.name, sys.executable, str(TOOLS), "whoami", inst.name, "0.0.0.0", str(WHOAMI_PORT))
        if inst.role:
            self.overlay_script(inst)

    def remove_instance(self, name: str) -> None:
        inst = self.instances.pop(name)
        for process in list(self.processes):
            if process.popen.args[3] == self.ns(name):
                self.stop(process)
        self.ip("sub", "link", "del", inst.port, check=False)
        self.del_ns(name)
        self.srcdst_exempt.discard(name)
        self.apply_srcdst_check()

    def overlay_env(self, inst: Instance) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "OVERLAY_ROLE": inst.role,
            "VXLAN_ID": str(VXLAN_ID),
            "VXLAN_GROUP": VXLAN_GROUP,
            "OVERLAY_ADDRESS": f"{inst.overlay}/{OVERLAY_PREFIX}",
            "OVERLAY_MTU": str(OVERLAY_MTU),
            "VPC_CIDR": VPC_CIDR,
        }
        if inst.role == "router":
            env["ROUTER_DNAT"] = f"tcp:{UI_PORT}:{MGMT.overlay}:{UI_PORT}"
            env.update(ROUTER_ISOLATION)
            env.update(self.router_env)
        else:
            env["OVERLAY_GATEWAY"] = ROUTER.overlay
        return env

    def overlay_script(self, inst: Instance) -> subprocess.CompletedProcess:
        return self.run(inst.name, "bash", str(SCRIPT), env=self.overlay_env(inst))

    def build(self, hosts: int = 2) -> None:
        self.build_underlay()
        for inst in (ROUTER, MGMT, *(host_instance(i) for i in range(hosts)), TROUBLEMAKER):
            self.add_instance(inst)
        self.mgmt_ui = self.spawn("mgmt", sys.executable, str(TOOLS), "whoami", "mgmt-ui", "0.0.0.0", str(UI_PORT),
                                  "sniff")
        self.wait_overlay()

    def wait_overlay(self, timeout: float = 10) -> None:
        """Bounded wait until every overlay member answers the router's ping."""
        deadline = time.monotonic() + timeout
        pending = [i for i in self.instances.values() if i.role == "member"]
        while pending and time.monotonic() < deadline:
            pending = [i for i in pending
                       if self.run("router", "ping", "-c1", "-W1", i.overlay, check=False).returncode != 0]
        if pending:
            raise LabError(f"overlay members not reachable from the router: {[i.name for i in pending]}")

    # --- observation ----------------------------------------------------------

    def state(self, short: str) -> dict:
        """What the overlay script may change, minus counters and timers."""
        def scrub(value):
            if isinstance(value, dict):
                return {k: scrub(v) for k, v in value.items() if "timer" not in k and k != "stats64"}
            if isinstance(value, list):
                return [scrub(v) for v in value]
            return value

        links = json.loads(self.ip(short, "-j", "-d", "link", "show").stdout)
        sysctls = self.run(short, "sh", "-c", "grep -H . /proc/sys/net/ipv4/ip_forward "
                           "/proc/sys/net/ipv4/conf/*/force_igmp_version").stdout
        return {
            "links": scrub(links),
            "addresses": self.ip(short, "-4", "addr", "show").stdout,
            "routes": self.ip(short, "-4", "route", "show", "table", "all").stdout,
            "rules": self.ip(short, "-4", "rule", "show").stdout,
            # Counter values out: replacing the table (every run) starts them at zero. So are
            # the elements of dynamic sets (the router's per-source budgets): traffic adds
            # them and their timeouts expire them.
            "nft": re.sub(r"\s*elements = \{[^}]*\}",
                          lambda m: "" if re.search(r"expires|limit rate|ct count", m.group(0)) else m.group(0),
                          re.sub(r"packets \d+ bytes \d+", "packets - bytes -",
                                 self.run(short, "nft", "list", "ruleset").stdout)),
            "sysctls": sysctls,
        }


def security_group_filter(rules, dev: str, table: str = "ec2_security_group") -> str:
    """An nftables table emulating an EC2 security group's INGRESS rules on `dev`.

    EC2's semantics (EC2 User Guide, "Security group rules" and "Security group
    connection tracking"): security groups are stateful, so responses to traffic the
    instance sent, and to connections a rule admitted, always pass; anything else is
    admitted only when a rule matches its protocol, port range (ICMP: type and code,
    -1 for all) and source CIDR; what no rule admits is dropped silently. A protocol
    other than tcp, udp, icmp admits all its traffic ("-1": every protocol).

    `rules` are components.model.routeraccess.IngressRule values (or anything with
    protocol, from_port, to_port, cidrs). Its own table, in prerouting before NAT
    (priority mangle, after conntrack), so the instance's own nftables (the
    overlay script replaces its table) never touch it; counter "refused" counts drops."""
    lines = []
    for rule in rules:
        sources = "ip saddr { " + ", ".join(rule.cidrs) + " }"
        if rule.protocol in ("tcp", "udp"):
            ports = str(rule.from_port) if rule.from_port == rule.to_port else f"{rule.from_port}-{rule.to_port}"
            match = f"{rule.protocol} dport {ports}"
        elif rule.protocol == "icmp":
            match = "meta l4proto icmp"
            if rule.from_port != -1:
                match = f"icmp type {rule.from_port}" + (f" icmp code {rule.to_port}" if rule.to_port != -1 else "")
        elif rule.protocol == "-1":
            match = ""
        elif rule.protocol.isdigit():
            match = f"ip protocol {rule.protocol}"
        else:
            raise LabError(f"security group rule {rule}: protocol {rule.protocol!r} is not rendered")
        lines.append(f"        {sources} {match} accept".replace("  accept", " accept"))
    body = "\n".join(lines)
    return f"""table ip {table}
delete table ip {table}
table ip {table} {{
    counter refused {{ }}
    chain ingress {{
        type filter hook prerouting priority mangle; policy accept;
        iifname != "{dev}" accept
        ct state established,related accept
{body}
        counter name "refused" drop
    }}
}}
"""


def overlay_address_in(net: str, address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(net)


PING_LOSS = re.compile(r"(\d+) packets transmitted, (\d+) received")
