"""Stack settings: one frozen, typed description of the deployment, validated in one place.

Pure module (no Pulumi import). `parse_settings` turns the stack's raw config values
(strings, as Pulumi hands them over, or already-parsed YAML values) into `Settings`,
collecting EVERY problem before it raises, so a user fixes a stack file in one round.
Instance-type facts (Nitro, metal, architecture) come from AWS at run time; the
checks on them live here too (`check_instance_type`) so both paths share one rule.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from components.model import ipplan
from components.model import rules
from components.boot import userdata
from components.model.aws_constraints import LOG_RETENTION_DAYS
from components.model.rules import AtLeast, Choice, Cidr, CrossKey, EachPattern, Pattern, Plain, Range

NAMESPACE = "cloudstack-ec2"

#: CloudStack releases this program knows how to install (DEB repository per X.Y).
SUPPORTED_CLOUDSTACK_RELEASES = ("4.19", "4.20", "4.21", "4.22")
#: apache/cloudstack#12417 / PR 12640: MySQL 8.4 (connector 8.4, caching_sha2_password).
MYSQL_84_FIRST_RELEASE = (4, 20, 3)
DB_ENGINE_VERSIONS = ("8.0", "8.4")
EFS_THROUGHPUT_MODES = ("elastic", "provisioned")
UBUNTU_RELEASES = rules.UBUNTU_RELEASES

#: Transit Gateway carries at most 8500-byte packets and VXLAN adds 50 bytes (components/model/rules.py,
#: shared with the boot scripts' checks).
TGW_MAX_MTU = rules.TGW_MAX_MTU
VXLAN_OVERHEAD = rules.VXLAN_OVERHEAD
MAX_OVERLAY_MTU = rules.MAX_OVERLAY_MTU
MIN_OVERLAY_MTU = rules.MIN_OVERLAY_MTU
MAX_VXLAN_ID = rules.MAX_VXLAN_ID
#: The guide's limit for KVM clusters.
MAX_HOSTS_PER_CLUSTER = 16
LOCAL_SCOPE_MULTICAST = ipaddress.IPv4Network("239.255.0.0/16")
ALL_IPV4 = ipaddress.IPv4Network("0.0.0.0/0")

_NAME = rules.ZONE_NAME
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
_DB_CLASS = re.compile(r"^db\.[a-z0-9-]+\.[a-z0-9-]+$")
_VERSION = rules.VERSION
_AWS_ID = {
    "vpc": re.compile(r"^vpc-[0-9a-f]{8,17}$"),
    "subnet": re.compile(r"^subnet-[0-9a-f]{8,17}$"),
    "rtb": re.compile(r"^rtb-[0-9a-f]{8,17}$"),
    "ami": re.compile(r"^ami-[0-9a-f]{8,17}$"),
}


@dataclass(frozen=True)
class Problem:
    key: str
    value: Any
    message: str

    def __str__(self) -> str:
        # A key of another namespace (aws:region) is named as it is.
        name = self.key if ":" in self.key else f"{NAMESPACE}:{self.key}"
        return f"{name} = {self.value!r}: {self.message}"


class SettingsError(ValueError):
    """All problems of a stack's settings, reported together."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the stack settings:\n{lines}")


@dataclass(frozen=True)
class Key:
    """One config key: its type, default and meaning (the README's table is checked against these)."""

    name: str
    kind: str  # str | int | bool | list
    default: Any
    doc: str
    #: The key's own rule (components/model/rules.py): rule(check, value) -> the value Settings holds.
    rule: Optional[rules.Rule] = None


# --------------------------------------------------------------------------- per-key rules
# The rules that need more than a range, a choice, a pattern or a CIDR (components/model/rules.py).


def _db_subnet_cidrs(c: rules.Check, texts: list) -> tuple[ipaddress.IPv4Network, ...]:
    """Two CIDRs (RDS needs subnets in two AZs) that do not overlap; [] is carved later."""
    parsed = []
    for text in texts:
        try:
            parsed.append(ipaddress.IPv4Network(text))
        except ValueError:
            c.problem(f"{text!r} is not an IPv4 CIDR")
    if texts and len(texts) != 2:
        c.problem("expected exactly two CIDRs (RDS needs subnets in two AZs)")
    if len(parsed) == 2 and parsed[0].overlaps(parsed[1]):
        c.problem("the two subnets overlap")
    return tuple(parsed)


def _multicast_group(c: rules.Check, text: str) -> Optional[ipaddress.IPv4Address]:
    """An IPv4 multicast address outside link-local control traffic; outside the local
    scope it may collide with other users of the Transit Gateway (a warning)."""
    try:
        group = ipaddress.IPv4Address(text)
    except ValueError:
        c.problem("expected an IPv4 multicast address (224.0.0.0/4), e.g. 239.255.0.100 in the local scope 239.255.0.0/16")
        return None
    if not group.is_multicast:
        c.problem("is not an IPv4 multicast address (224.0.0.0/4); use one in 239.255.0.0/16")
    elif group in ipaddress.IPv4Network("224.0.0.0/24"):
        c.problem("224.0.0.0/24 is link-local control traffic; use one in 239.255.0.0/16")
    elif group not in LOCAL_SCOPE_MULTICAST:
        c.warn(f"multicastGroup {group} is outside the IPv4 local scope 239.255.0.0/16: "
               "it may collide with other multicast users of the Transit Gateway")
    return group


def _guest_cidr(c: rules.Check, text: str) -> Optional[ipaddress.IPv4Network]:
    """A CIDR inside the private ranges CloudStack accepts for a zone's guests."""
    guest = Cidr("10.1.1.0/24")(c, text)
    if guest and not any(guest.subnet_of(n) for n in ipplan.GUEST_CIDR_RANGES):
        c.problem("CloudStack accepts only private guest CIDRs: inside "
                  + ", ".join(map(str, ipplan.GUEST_CIDR_RANGES)), str(guest))
    return guest


def _guest_vlan_range(c: rules.Check, text: str) -> tuple[int, int]:
    """first-last in 1..4094, whose last VLAN's bridge/device names fit Linux."""
    m = re.match(r"^(\d+)-(\d+)$", text)
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2)) <= 4094):
        c.problem("expected first-last with 1 <= first <= last <= 4094, e.g. 1000-1999")
        return (0, 0)
    vlans = (int(m.group(1)), int(m.group(2)))
    # The KVM agent names a guest VLAN's bridge and device after the overlay port.
    too_long = [n for n in userdata.guest_vlan_devices(vlans[1]) if len(n) > userdata.LINUX_IFNAME_MAX]
    if too_long:
        c.problem(f"the KVM agent would name VLAN {vlans[1]}'s bridge/device {', '.join(too_long)}, longer than "
                  f"Linux's {userdata.LINUX_IFNAME_MAX} characters; expected a last VLAN that fits")
    return vlans


def _admin_cidrs(c: rules.Check, texts: list) -> list[ipaddress.IPv4Network]:
    """Required: the CIDRs that may reach the UI/API."""
    if not texts and not c.has_problem():
        c.problem('must name who may reach the UI/API, e.g. ["203.0.113.7/32"] '
                  '(pulumi config set --path "adminCidrs[0]" <your address>/32)')
    admin = []
    for text in texts:
        try:
            admin.append(ipaddress.IPv4Network(text))
        except ValueError:
            c.problem(f"{text!r} is not an IPv4 CIDR (host bits must be zero, e.g. 203.0.113.0/24)")
    return admin


def _tenant_vpc_access_cidrs(c: rules.Check, texts: list) -> list[ipaddress.IPv4Network]:
    """CIDRs, never everything (what they must not overlap: tenant_access_keeps_isolation)."""
    nets = []
    for text in texts:
        try:
            net = ipaddress.IPv4Network(text)
        except ValueError:
            c.problem(f"{text!r} is not an IPv4 CIDR (host bits must be zero, e.g. 10.0.8.0/24)")
            continue
        if net.prefixlen == 0:
            c.problem(f"{text!r} is everything; name the ranges tenants may reach")
        else:
            nets.append(net)
    return nets


def _cloudstack_version(c: rules.Check, version: str) -> str:
    """X.Y or X.Y.Z of a supported release, never 4.19.0."""
    parsed = parse_version(version)
    if parsed is None or f"{parsed[0]}.{parsed[1]}" not in SUPPORTED_CLOUDSTACK_RELEASES:
        c.problem(f"expected X.Y or X.Y.Z of a supported release: {', '.join(SUPPORTED_CLOUDSTACK_RELEASES)}")
    elif parsed == (4, 19, 0):
        # 4.19.0's management server signs its SSH logins to hosts with an RSA key
        # and SHA-1, which the OpenSSH of Ubuntu 22.04/24.04 refuses: addHost fails.
        # 4.19.1 generates an ECDSA key.
        c.problem("4.19.0's management server logs in to KVM hosts with an RSA/SHA-1 SSH key that Ubuntu "
                  "22.04/24.04's OpenSSH refuses, so no host can be added (fixed in 4.19.1); use 4.19 "
                  "(its newest patch release), 4.19.1 or later")
    return version


def _db_engine_version(c: rules.Check, version: str) -> str:
    """A MySQL major version RDS offers, never Aurora."""
    if version.lower().startswith("aurora"):
        c.problem("Aurora is not supported: CloudStack needs the MyISAM storage engine, which Aurora lacks; use 8.4 or 8.0")
    elif version not in DB_ENGINE_VERSIONS:
        c.problem(f"must be a MySQL major version: {', '.join(DB_ENGINE_VERSIONS)}")
    return version


def _efs_throughput_mode(c: rules.Check, mode: str) -> str:
    """elastic or provisioned, never bursting."""
    if mode == "bursting":
        c.problem("bursting runs out of credits after a few VMs boot; use elastic or provisioned")
    elif mode not in EFS_THROUGHPUT_MODES:
        c.problem(f"must be one of {', '.join(EFS_THROUGHPUT_MODES)}")
    return mode



KEYS: tuple[Key, ...] = (
    # Network
    Key("vpcCidr", "str", "10.0.0.0/16", "CIDR of the VPC (new, or the existing one named by `vpcId`).",
        rule=Cidr("10.0.0.0/16")),
    Key("cloudstackSubnetCidr", "str", "10.0.0.0/24", "The DEDICATED subnet of every CloudStack instance and the EFS mount target; nothing else may live there.",
        rule=Cidr("10.0.0.0/24", (0, 28), "must be a /28 or larger (EC2 reserves five addresses per subnet)")),
    Key("dbSubnetCidrs", "list", [], "Two subnets (two AZs) for RDS; empty: carved from the top of `vpcCidr`.",
        rule=_db_subnet_cidrs),
    Key("availabilityZone", "str", "", "AZ of the CloudStack subnet (pick one that offers your metal type); empty: the region's first AZ.",
        rule=Plain("any text: choose_availability_zones checks it against the region's AZs at run time")),
    Key("vpcId", "str", "", "Use this existing VPC instead of creating one (then also set `cloudstackSubnetId` and `dbSubnetIds`).",
        rule=Pattern(_AWS_ID["vpc"], "a VPC id like vpc-0123456789abcdef0", optional=True)),
    Key("cloudstackSubnetId", "str", "", "Existing dedicated subnet (with `vpcId`); its CIDR must equal `cloudstackSubnetCidr`.",
        rule=Pattern(_AWS_ID["subnet"], "a subnet id like subnet-0123456789abcdef0", optional=True)),
    Key("dbSubnetIds", "list", [], "Existing subnets in two AZs for RDS (with `vpcId`).",
        rule=EachPattern(_AWS_ID["subnet"], "subnet")),
    Key("routeTableIds", "list", [], "Existing route tables that get the overlay route to the router (with `vpcId`; at least those of the CloudStack and DB subnets).",
        rule=EachPattern(_AWS_ID["rtb"], "rtb")),
    Key("overlayCidr", "str", "10.100.0.0/16", "The VXLAN overlay (CloudStack's management, pod and public addresses); must not overlap the VPC.",
        rule=Cidr("10.100.0.0/16", (ipplan.MIN_OVERLAY_PREFIX, ipplan.MAX_OVERLAY_PREFIX), f"prefix must be /{ipplan.MIN_OVERLAY_PREFIX}../{ipplan.MAX_OVERLAY_PREFIX}", unusable_outside=True)),
    Key("vxlanId", "int", 100, "VXLAN network identifier of the overlay (1..16777215).",
        rule=Range(1, MAX_VXLAN_ID)),
    Key("multicastGroup", "str", "239.255.0.100", "IPv4 multicast group the VTEPs join (IPv4 local scope 239.255.0.0/16 recommended).",
        rule=_multicast_group),
    Key("overlayMtu", "int", 8450, "MTU of cloudbr0/ethovl0 (1280..8450: Transit Gateway's 8500 minus VXLAN's 50).",
        rule=Range(MIN_OVERLAY_MTU, MAX_OVERLAY_MTU, f" (Transit Gateway's {TGW_MAX_MTU} minus VXLAN's {VXLAN_OVERHEAD}; IPv6 needs at least {MIN_OVERLAY_MTU})")),
    Key("guestCidr", "str", "10.1.1.0/24", "Zone guest CIDR of isolated guest networks (behind CloudStack's virtual routers).",
        rule=_guest_cidr),
    Key("guestVlanRange", "str", "1000-1999", "Guest VLAN IDs (`first-last`, 1..4094) carried inside the overlay.",
        rule=_guest_vlan_range),
    Key("adminCidrs", "list", [], "Who may reach the CloudStack UI/API (TCP 8080) on the router; required, never 0.0.0.0/0 unless `allowPublicAdminAccess`.",
        rule=_admin_cidrs),
    Key("allowPublicAdminAccess", "bool", False, "Allow 0.0.0.0/0 in `adminCidrs` (the UI/API open to the internet).",
        rule=Plain("true or false")),
    Key("transitGatewayTimeoutMinutes", "int", 30, "Create/update/delete timeout of the Transit Gateway, its VPC attachment and multicast domain (the provider's default is 10 minutes); 10..120.",
        rule=Range(10, 120)),
    Key("vmForwards", "list", [], "Services offered from VMs: `proto:port:target:targetPort@sources`, e.g. `tcp:2222:10.100.128.5:22@203.0.113.0/24`; the router's Elastic IP port `port` goes to a public-range address (a virtual router's port forwarding); sources are CIDRs separated by `,`, or `anywhere`. See Offering services from VMs.",
        rule=CrossKey("vm_forwards_valid", "a target must be in the public range of overlayCidr")),
    Key("tenantVpcAccessCidrs", "list", [], "Parts of the VPC (or networks reachable from it) that tenant VMs may reach through the router besides DNS and the internet, e.g. during a migration; never the CloudStack or database subnets. See Isolation.",
        rule=_tenant_vpc_access_cidrs),
    # Tenants' DNS (the router's resolver, userdata/overlay-router.sh TENANT_DNS): false, it
    # recurses from the root itself, so tenants never see the VPC's private hosted zones or
    # its own names; true, it forwards to the VPC resolver, which answers them.
    Key("tenantPrivateDns", "bool", False, "Tenant VMs' DNS answers include the VPC's private hosted zones and names (the router's resolver forwards to the VPC resolver); false: it resolves from the internet's root itself. See Isolation.",
        rule=Plain("true or false")),
    # Instances
    Key("routerInstanceType", "str", "c5n.large", "Overlay router: Nitro (multicast sender), sized for the bandwidth you need.",
        rule=Pattern(_INSTANCE_TYPE, "an EC2 instance type such as c5n.large")),
    Key("managementInstanceType", "str", "m6i.xlarge", "CloudStack management server: Nitro.",
        rule=Pattern(_INSTANCE_TYPE, "an EC2 instance type such as m6i.xlarge")),
    Key("hostInstanceType", "str", "c5.metal", "KVM hosts: Nitro with hardware virtualization: a metal type (c5.metal, m5zn.metal) or one with nested virtualization (C8i/M8i/R8i, e.g. c8i.4xlarge); a change applies to hosts added later, in a new cluster.",
        rule=Pattern(_INSTANCE_TYPE, "an EC2 instance type such as c5.metal or c8i.4xlarge")),
    Key("hostCount", "int", 1, "Number of KVM hosts; change it to grow or shrink the cloud.",
        rule=AtLeast(1)),
    Key("hostsPerCluster", "int", 16, "KVM hosts per CloudStack cluster (1..16); a new cluster starts every N hosts, and where the hosts' instance type changes.",
        rule=Range(1, MAX_HOSTS_PER_CLUSTER, " (KVM hosts per CloudStack cluster)")),
    Key("ubuntuRelease", "str", "24.04", "Ubuntu LTS of every instance (22.04 or 24.04).",
        rule=Choice(tuple(UBUNTU_RELEASES))),
    Key("amiId", "str", "", "Override the Ubuntu AMI looked up for `ubuntuRelease`.",
        rule=Pattern(_AWS_ID["ami"], "an AMI id like ami-0123456789abcdef0", optional=True)),
    Key("rootVolumeGb", "int", 50, "Encrypted gp3 root volume size of each instance (GiB).",
        rule=Range(20, 16384)),
    Key("hostTimeoutMinutes", "int", 60, "Create/update/delete timeout of each KVM host: metal instances can take more than 20 minutes to start or stop (the provider's default is 10 to create); 20..240.",
        rule=Range(20, 240, " (metal instances take more than 20 minutes)")),
    # CloudStack
    Key("cloudstackVersion", "str", "4.22", "CloudStack release (X.Y for the newest patch, or X.Y.Z); one of 4.19..4.22.",
        rule=_cloudstack_version),
    Key("zoneName", "str", "zone1", "CloudStack zone name; also the EFS directory (`/<zone>/primary`, `/<zone>/secondary`).",
        rule=Pattern(_NAME, rules.ZONE_NAME_ACCEPTED + " (it is also a directory name)")),
    Key("registerCloud", "bool", True, "Register zone, pod, clusters, hosts and storage through the CloudStack API.",
        rule=Plain("true or false")),
    Key("apiEndpoint", "str", "", "CloudStack API URL the registration uses; empty: http://<router Elastic IP>:8080/client/api.",
        rule=Pattern(re.compile(r"^https?://[^/\s]+(/\S*)?$"), "an http(s) URL such as http://localhost:8080/client/api", optional=True)),
    Key("registrationTimeoutMinutes", "int", 90, "How long the registration waits for the API keys and the API on first boot (RDS creation, Multi-AZ especially, is part of it).",
        rule=Range(1, 240)),
    Key("systemVmWaitMinutes", "int", 30, "How long the registration waits for the system VM template to be Ready and, once the zone is enabled, for the secondary storage VM and the console proxy to run (1..240).",
        rule=Range(1, 240)),
    Key("destroyWithRunningVms", "bool", False, "Let `pulumi destroy` delete a cloud whose CloudStack still runs VMs (they are lost with it); by default the destroy stops, before anything on AWS is deleted, naming them.",
        rule=Plain("true or false")),
    # Database
    Key("dbEngineVersion", "str", "8.4", "RDS MySQL major version: 8.4, or 8.0 (paid Extended Support since 2026-07-31).",
        rule=_db_engine_version),
    Key("dbInstanceClass", "str", "db.t4g.medium", "RDS instance class.",
        rule=Pattern(_DB_CLASS, "an RDS instance class such as db.t4g.medium")),
    Key("dbAllocatedStorageGb", "int", 20, "RDS storage (GiB, gp3, encrypted); 20..65536.",
        rule=Range(20, 65536)),
    Key("dbMultiAz", "bool", False, "RDS Multi-AZ standby.",
        rule=Plain("true or false")),
    Key("dbBackupRetentionDays", "int", 7, "Automated backup retention (1..35 days).",
        rule=Range(1, 35, " (automated backups stay on)")),
    Key("deletionProtection", "bool", True, "Protect the database and the EFS file system (RDS deletion protection and Pulumi `protect`); set false and `pulumi up` before `pulumi destroy`.",
        rule=Plain("true or false")),
    Key("dbSkipFinalSnapshot", "bool", False, "Skip the final snapshot when the database is deleted.",
        rule=Plain("true or false")),
    Key("dbLogRetentionDays", "int", 30, "Days CloudWatch Logs keeps the database's error log (1, 3, 5, 7, 14, 30, 60, 90, ... 3653, or 0 for never expire); the log group is deleted with the stack.",
        rule=Choice(LOG_RETENTION_DAYS, f"CloudWatch Logs accepts only {', '.join(map(str, LOG_RETENTION_DAYS))} (0: never expire)")),
    Key("dbTimeoutMinutes", "int", 180, "Create/update/delete timeout of the RDS instance: Multi-AZ creation, storage changes and engine upgrades can outlast the provider's defaults (40/80/60 minutes); 40..720.",
        rule=Range(40, 720)),
    # Storage
    Key("efsThroughputMode", "str", "elastic", "EFS throughput: elastic or provisioned (never bursting: its credits run out).",
        rule=_efs_throughput_mode),
    Key("efsProvisionedMibps", "int", 128, "Provisioned throughput (MiB/s, 1..3414) when `efsThroughputMode` is provisioned.",
        rule=CrossKey("efs_provisioned_throughput", "1..3414 only with efsThroughputMode provisioned")),
)
KEYS_BY_NAME = {k.name: k for k in KEYS}

#: Instance metadata and EC2's link-local services: never reachable from the overlay.
LINK_LOCAL = rules.LINK_LOCAL


@dataclass(frozen=True)
class Settings:
    vpc_cidr: ipaddress.IPv4Network
    cloudstack_subnet_cidr: ipaddress.IPv4Network
    db_subnet_cidrs: tuple[ipaddress.IPv4Network, ...]
    availability_zone: str
    vpc_id: str
    cloudstack_subnet_id: str
    db_subnet_ids: tuple[str, ...]
    route_table_ids: tuple[str, ...]
    overlay_cidr: ipaddress.IPv4Network
    vxlan_id: int
    multicast_group: ipaddress.IPv4Address
    overlay_mtu: int
    guest_cidr: ipaddress.IPv4Network
    guest_vlan_range: tuple[int, int]
    admin_cidrs: tuple[ipaddress.IPv4Network, ...]
    allow_public_admin_access: bool
    router_instance_type: str
    management_instance_type: str
    host_instance_type: str
    host_count: int
    hosts_per_cluster: int
    ubuntu_release: str
    ami_id: str
    root_volume_gb: int
    cloudstack_version: str
    zone_name: str
    register_cloud: bool
    api_endpoint: str
    registration_timeout_minutes: int
    db_engine_version: str
    db_instance_class: str
    db_allocated_storage_gb: int
    db_multi_az: bool
    db_backup_retention_days: int
    deletion_protection: bool
    db_skip_final_snapshot: bool
    efs_throughput_mode: str
    efs_provisioned_mibps: int
    tenant_vpc_access_cidrs: tuple[ipaddress.IPv4Network, ...] = ()
    #: tenantPrivateDns: the router's resolver forwards tenants' queries to the VPC resolver.
    tenant_private_dns: bool = False
    vm_forwards: tuple["VmForward", ...] = ()
    system_vm_wait_minutes: int = 30
    destroy_with_running_vms: bool = False
    warnings: tuple[str, ...] = field(default=(), compare=False)
    #: Custom timeouts (minutes) where the provider's defaults are too short for real AWS.
    transit_gateway_timeout_minutes: int = 30
    host_timeout_minutes: int = 60
    db_timeout_minutes: int = 180
    db_log_retention_days: int = 30

    @property
    def uses_existing_vpc(self) -> bool:
        return bool(self.vpc_id)

    @property
    def ubuntu_codename(self) -> str:
        return UBUNTU_RELEASES[self.ubuntu_release]

    @property
    def cloudstack_release(self) -> str:
        """X.Y: the package repository's component."""
        return ".".join(self.cloudstack_version.split(".")[:2])

    @property
    def cluster_count(self) -> int:
        return -(-self.host_count // self.hosts_per_cluster)

    def cluster_of_host(self, index: int) -> int:
        return index // self.hosts_per_cluster

    def ip_plan(self) -> ipplan.IpPlan:
        return ipplan.build_plan(
            overlay_cidr=str(self.overlay_cidr),
            vpc_cidr=str(self.vpc_cidr),
            host_count=self.host_count,
            guest_cidr=str(self.guest_cidr),
            guest_vlans=self.guest_vlan_range,
        )


@dataclass(frozen=True)
class VmForward:
    """One service offered from a VM: `protocol` `port` on the router's Elastic IP goes to
    `target`:`target_port` (a public-range address, e.g. a virtual router's port
    forwarding), admitted from `sources` only."""

    protocol: str  # tcp | udp
    port: int
    target: ipaddress.IPv4Address
    target_port: int
    sources: tuple[ipaddress.IPv4Network, ...]

    @property
    def dnat(self) -> str:
        """The router's form (overlay-network.sh VM_FORWARDS / ROUTER_DNAT entry)."""
        return f"{self.protocol}:{self.port}:{self.target}:{self.target_port}"


#: Router ports never offered to VMs: the UI/API (8080) and the console page (80). Consoles
#: live on the console address, but a security group rule cannot name one of the router's two
#: addresses (components/model/routeraccess.py): a forward's sources on 80 or 8080 would reach the
#: console too.
RESERVED_FORWARD_PORTS = (80, 8080)
_FORWARD = re.compile(rf"^{rules.DNAT}@(.+)$")


def _forward_sources(text: str, bad: Callable[[str], None]) -> list[ipaddress.IPv4Network]:
    """The CIDRs of a forward's sources; [] after reporting the first bad one."""
    sources = []
    for item in text.split(","):
        try:
            net = ipaddress.IPv4Network(item.strip())
        except ValueError:
            bad(f"source {item!r} is not an IPv4 CIDR (host bits zero)")
            return []
        if net.prefixlen == 0:
            bad("0.0.0.0/0 opens the service to the internet: write 'anywhere' to mean it")
            return []
        sources.append(net)
    return sources


def parse_vm_forwards(c: "_Collector", overlay: Optional[ipaddress.IPv4Network]) -> list[VmForward]:
    texts = c.given["vmForwards"]
    forwards: list[VmForward] = []
    public = ipplan.address_classes(overlay).public if overlay is not None else None
    seen: dict[tuple[str, int], str] = {}
    for text in texts:
        def bad(message: str) -> None:
            c.problem("vmForwards", texts, f"entry {text!r}: {message}")

        m = _FORWARD.match(text)
        if not m:
            bad("expected proto:port:target:targetPort@sources (proto tcp or udp; sources: CIDRs separated by"
                " ',' or 'anywhere'), e.g. tcp:2222:10.100.128.5:22@203.0.113.0/24")
            continue
        protocol, port, target_text, target_port, source_text = m.groups()
        port, target_port = int(port), int(target_port)
        if not (1 <= port <= 65535 and 1 <= target_port <= 65535):
            bad("ports must be 1..65535")
            continue
        if port in RESERVED_FORWARD_PORTS:
            bad(f"port {port} is reserved on the router (the UI/API and the console proxy:"
                f" {', '.join(map(str, RESERVED_FORWARD_PORTS))})")
            continue
        if (protocol, port) in seen:
            bad(f"{protocol} port {port} is already forwarded by {seen[(protocol, port)]!r}")
            continue
        try:
            target = ipaddress.IPv4Address(target_text)
        except ValueError:
            bad(f"{target_text!r} is not an IPv4 address")
            continue
        if public is not None and target not in public:
            bad(f"the target must be in the public range {public} (a virtual router's public address);"
                " infrastructure and system addresses are never forwarded")
            continue
        sources = [ALL_IPV4] if source_text == "anywhere" else _forward_sources(source_text, bad)
        if not sources:
            continue
        seen[(protocol, port)] = text
        forwards.append(VmForward(protocol, port, target, target_port, tuple(sources)))
    return forwards


# --------------------------------------------------------------------------- parsing


class _KeyCheck:
    """The `rules.Check` one key's rule reports to."""

    def __init__(self, collector: "_Collector", key: str, value: Any):
        self._c, self.key, self._value = collector, key, value

    def problem(self, message: str, value: Any = ...) -> None:
        self._c.problem(self.key, self._value if value is ... else value, message)

    def warn(self, text: str) -> None:
        self._c.warnings.append(text)

    def has_problem(self) -> bool:
        return self._c.has_problem(self.key)


class _Collector:
    """Reads raw values by key, converting and recording problems instead of raising.

    `given[name]`: the value converted to its kind (or its default); `values[name]`: what
    the key's rule made of it (an IPv4Network for a CIDR, None when unusable), which the
    cross-key rules read and may refine."""

    def __init__(self, raw: Mapping[str, Any], lookup_instance: Optional["InstanceLookup"] = None):
        self.raw = raw
        self.lookup_instance = lookup_instance
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.given: dict[str, Any] = {}
        self.values: dict[str, Any] = {}

    def problem(self, key: str, value: Any, message: str) -> None:
        self.problems.append(Problem(key, value, message))

    def has_problem(self, key: str) -> bool:
        return any(p.key == key for p in self.problems)

    def check_key(self, key: Key) -> None:
        """The key's kind, then its own rule."""
        value = self.value(key.name)
        self.given[key.name] = value
        self.values[key.name] = key.rule(_KeyCheck(self, key.name, value), value) if key.rule else value

    def value(self, name: str) -> Any:
        key = KEYS_BY_NAME[name]
        raw = self.raw.get(name)
        if raw is None or raw == "":
            return key.default
        converter = {"str": self._str, "int": self._int, "bool": self._bool, "list": self._list}[key.kind]
        return converter(name, raw, key.default)

    def _str(self, name: str, raw: Any, default: Any) -> Any:
        if isinstance(raw, (dict, list)):
            self.problem(name, raw, "expected a string")
            return default
        return str(raw).strip()

    def _int(self, name: str, raw: Any, default: Any) -> Any:
        if isinstance(raw, bool):
            self.problem(name, raw, "expected an integer")
            return default
        try:
            return int(str(raw).strip())
        except ValueError:
            self.problem(name, raw, "expected an integer")
            return default

    def _bool(self, name: str, raw: Any, default: Any) -> Any:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        self.problem(name, raw, "expected true or false")
        return default

    def _list(self, name: str, raw: Any, default: Any) -> Any:
        value = raw
        if isinstance(raw, str):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                self.problem(name, raw, 'expected a list, e.g. ["10.0.0.0/8"] (pulumi config set --path "' + name + '[0]" ...)')
                return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(name, raw, "expected a list of strings")
            return default
        return [v.strip() for v in value]


def parse_version(text: str) -> Optional[tuple[int, int, Optional[int]]]:
    m = _VERSION.match(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), (int(m.group(3)) if m.group(3) else None)


def supports_mysql_84(cloudstack_version: str) -> bool:
    """X.Y means the newest patch of that release, which for 4.20 is past 4.20.3."""
    parsed = parse_version(cloudstack_version)
    if parsed is None:
        return False
    major, minor, patch = parsed
    if patch is None:
        return (major, minor) >= MYSQL_84_FIRST_RELEASE[:2]
    return (major, minor, patch) >= MYSQL_84_FIRST_RELEASE


InstanceLookup = Callable[[str], "Optional[InstanceFacts]"]


# --------------------------------------------------------------------------- cross-key rules
# Each reads the per-key results (`c.values`, None where unusable) and reports on one rule
# that involves several keys; they run in this order, after every key's own rule.


def _unparsed_network(text: str) -> Optional[ipaddress.IPv4Network]:
    try:
        return ipaddress.IPv4Network(text)
    except ValueError:
        return None


def subnet_inside_vpc(c: _Collector) -> None:
    """The CloudStack subnet is a subnet of the VPC."""
    vpc, subnet = c.values["vpcCidr"], c.values["cloudstackSubnetCidr"]
    if vpc and subnet and not subnet.subnet_of(vpc):
        c.problem("cloudstackSubnetCidr", str(subnet), f"must lie inside vpcCidr {vpc}")


def overlay_outside_vpc(c: _Collector) -> None:
    """The VPC routes the overlay to the router, so the two must not overlap (checked even
    when the overlay's prefix is refused, so both problems come in one round)."""
    vpc, overlay = c.values["vpcCidr"], c.values["overlayCidr"] or _unparsed_network(c.given["overlayCidr"])
    if vpc and overlay and overlay.overlaps(vpc):
        c.problem("overlayCidr", str(overlay), f"must not overlap vpcCidr {vpc}: the VPC routes the overlay to the router")


def guest_cidr_apart(c: _Collector) -> None:
    """Guest networks are behind virtual routers on the overlay: apart from the VPC and the overlay."""
    guest = c.values["guestCidr"]
    if guest:
        for other_name in ("vpcCidr", "overlayCidr"):
            other = c.values[other_name]
            if other and guest.overlaps(other):
                c.problem("guestCidr", str(guest), f"must not overlap {other_name} {other}")


def db_subnets_in_vpc(c: _Collector) -> None:
    """The database subnets lie in the VPC, off the dedicated CloudStack subnet; when not
    given, they are carved from the top of the VPC."""
    vpc, subnet = c.values["vpcCidr"], c.values["cloudstackSubnetCidr"]
    if c.given["dbSubnetCidrs"]:
        for net in c.values["dbSubnetCidrs"]:
            if vpc and not net.subnet_of(vpc):
                c.problem("dbSubnetCidrs", str(net), f"must lie inside vpcCidr {vpc}")
            if subnet and net.overlaps(subnet):
                c.problem("dbSubnetCidrs", str(net), f"must not overlap the dedicated cloudstackSubnetCidr {subnet}")
    elif vpc and subnet and subnet.subnet_of(vpc):
        try:
            c.values["dbSubnetCidrs"] = ipplan.carve_db_subnets(str(vpc), [str(subnet)])
        except ValueError as exc:
            c.problem("dbSubnetCidrs", [], f"cannot be derived: {exc}; set two CIDRs explicitly")


def existing_vpc_ids_together(c: _Collector) -> None:
    """An existing VPC comes with its subnets and route tables: all ids or none."""
    vpc_id, subnet_id = c.values["vpcId"], c.values["cloudstackSubnetId"]
    db_subnet_ids, route_table_ids = c.values["dbSubnetIds"], c.values["routeTableIds"]
    if vpc_id:
        if not subnet_id:
            c.problem("cloudstackSubnetId", "", "required with vpcId: the existing dedicated CloudStack subnet")
        if len(db_subnet_ids) != 2:
            c.problem("dbSubnetIds", db_subnet_ids, "required with vpcId: two existing subnets in two AZs")
        if not route_table_ids:
            c.problem("routeTableIds", route_table_ids,
                      "required with vpcId: at least the route tables of the CloudStack and database subnets, "
                      "which must send the overlay CIDR to the router (else replies to overlay addresses are lost)")
    elif subnet_id or db_subnet_ids or route_table_ids:
        c.problem("vpcId", "", "required when cloudstackSubnetId, dbSubnetIds or routeTableIds is set")


def public_admin_access_consented(c: _Collector) -> None:
    """0.0.0.0/0 in adminCidrs opens the UI/API to the internet: only with allowPublicAdminAccess."""
    for net in c.values["adminCidrs"]:
        if net == ALL_IPV4 and not c.values["allowPublicAdminAccess"]:
            c.problem("adminCidrs", c.given["adminCidrs"],
                      "0.0.0.0/0 opens the UI/API to the internet: set allowPublicAdminAccess to true to mean it")


def tenant_access_keeps_isolation(c: _Collector) -> None:
    """The isolation protects exactly these: opening them to tenants would undo it."""
    texts = c.given["tenantVpcAccessCidrs"]
    protected = [("cloudstackSubnetCidr (EFS and the CloudStack instances)", c.values["cloudstackSubnetCidr"]),
                 *(("dbSubnetCidrs (the database)", n) for n in c.values["dbSubnetCidrs"]),
                 ("overlayCidr", c.values["overlayCidr"]), ("169.254.0.0/16 (instance metadata)", LINK_LOCAL)]
    kept = []
    for text in texts:
        net = _unparsed_network(text)
        if net is None or net.prefixlen == 0:
            continue  # refused by the key's own rule
        clashes = [f"{name} {other}" for name, other in protected if other is not None and net.overlaps(other)]
        if clashes:
            c.problem("tenantVpcAccessCidrs", texts,
                      f"{text!r} overlaps {', '.join(clashes)}, which tenants must never reach")
        else:
            kept.append(net)
    c.values["tenantVpcAccessCidrs"] = kept


def vm_forwards_valid(c: _Collector) -> None:
    """Each forward's target is in the overlay's public range (see parse_vm_forwards)."""
    c.values["vmForwards"] = parse_vm_forwards(c, c.values["overlayCidr"])


def instance_types_known(c: _Collector) -> None:
    """What AWS says of the instance types (Nitro, KVM-capable hosts, x86_64), when asked."""
    if c.lookup_instance is None:
        return
    for key, needs_metal in (("routerInstanceType", False), ("managementInstanceType", False),
                             ("hostInstanceType", True)):
        name = c.values[key]
        if _INSTANCE_TYPE.match(name):
            facts = c.lookup_instance(name)
            if facts is not None and facts.unknown_offline:
                c.warnings.append(f"{key} {name} is not in the offline table: unknown offline (Nitro, metal and "
                                  "x86_64 are checked against AWS at preview), priced as unknown")
            c.problems.extend(check_instance_type(key, name, needs_metal, facts))


def hosts_fit(c: _Collector) -> None:
    """The hosts fit the overlay's address plan, one Transit Gateway multicast group and
    the CloudStack subnet."""
    host_count, overlay, subnet = c.values["hostCount"], c.values["overlayCidr"], c.values["cloudstackSubnetCidr"]
    if host_count < 1:
        return
    if overlay is not None:
        capacity = ipplan.host_capacity(overlay)
        if host_count > capacity:
            c.problem("hostCount", host_count,
                      f"overlayCidr {overlay} has room for {capacity} hosts; widen overlayCidr or lower hostCount")
    members = 1 + 1 + host_count
    if members > ipplan.MAX_MULTICAST_MEMBERS:
        c.problem("hostCount", host_count,
                  f"router + management server + {host_count} hosts = {members} members, but a Transit Gateway "
                  f"multicast group holds at most {ipplan.MAX_MULTICAST_MEMBERS}: at most "
                  f"{ipplan.MAX_MULTICAST_MEMBERS - 2} hosts per overlay")
    if subnet is not None and subnet.prefixlen <= 28:
        room = ipplan.subnet_host_capacity(subnet)
        if host_count > room:
            usable = subnet.num_addresses - ipplan.SUBNET_RESERVED_ADDRESSES
            c.problem("cloudstackSubnetCidr", str(subnet),
                      f"has {usable} usable addresses (EC2 reserves {ipplan.SUBNET_RESERVED_ADDRESSES}), but the "
                      f"router, the management server, hostCount {host_count} hosts, the "
                      f"{', the '.join(ipplan.SUBNET_OTHER_ADDRESSES)} need {usable - room + host_count}; "
                      f"it holds at most {room} hosts: widen cloudstackSubnetCidr or lower hostCount")


def mysql_84_supported(c: _Collector) -> None:
    """apache/cloudstack#12417: MySQL 8.4 needs a CloudStack release that supports it."""
    version, db_version = c.values["cloudstackVersion"], c.values["dbEngineVersion"]
    # Judged for any release this program knows (4.19.0 too: its own problem is another one).
    parsed = parse_version(version)
    known = parsed is not None and f"{parsed[0]}.{parsed[1]}" in SUPPORTED_CLOUDSTACK_RELEASES
    if db_version == "8.4" and known and not supports_mysql_84(version):
        c.problem("dbEngineVersion", db_version,
                  f"cloudstackVersion {version} does not support MySQL 8.4 (added in "
                  f"{'.'.join(map(str, MYSQL_84_FIRST_RELEASE))}); use 8.0 or a newer cloudstackVersion")


def mysql_80_extended_support(c: _Collector) -> None:
    """A warning: RDS MySQL 8.0 costs Extended Support since 2026-07-31."""
    if c.values["dbEngineVersion"] == "8.0":
        c.warnings.append(
            "dbEngineVersion 8.0: RDS MySQL 8.0 left standard support on 2026-07-31; a new 8.0 database "
            "is enrolled in paid RDS Extended Support (about $0.10 per vCPU-hour on top of the instance). "
            + ("Use 8.4: your cloudstackVersion supports it." if supports_mysql_84(c.values["cloudstackVersion"]) else "")
        )


def efs_provisioned_throughput(c: _Collector) -> None:
    """EFS's provisioned throughput (1..3414 MiB/s) matters only in provisioned mode."""
    efs_mibps = c.values["efsProvisionedMibps"]
    if c.values["efsThroughputMode"] == "provisioned" and not 1 <= efs_mibps <= 3414:
        c.problem("efsProvisionedMibps", efs_mibps, "must be between 1 and 3414 MiB/s with provisioned throughput")


#: The rules that involve several keys, run in this order after every key's own rule.
CROSS_KEY_RULES: tuple[Callable[[_Collector], None], ...] = (
    subnet_inside_vpc,
    overlay_outside_vpc,
    guest_cidr_apart,
    db_subnets_in_vpc,
    existing_vpc_ids_together,
    public_admin_access_consented,
    tenant_access_keeps_isolation,
    vm_forwards_valid,
    instance_types_known,
    hosts_fit,
    mysql_84_supported,
    mysql_80_extended_support,
    efs_provisioned_throughput,
)


def _field_name(key: str) -> str:
    """vpcCidr -> vpc_cidr: a Settings field is named after its key."""
    return re.sub(r"([A-Z])", r"_\1", key).lower()


def parse_settings(
    raw: Mapping[str, Any],
    lookup_instance: Optional[InstanceLookup] = None,
    known_keys_only: bool = True,
) -> Settings:
    """Validate the raw config of a stack. Raises SettingsError listing every problem.

    Unknown keys first, then each key of KEYS by its own rule (`Key.rule`), then
    CROSS_KEY_RULES. `lookup_instance` answers what AWS knows of an instance type (None:
    unknown type); without it the instance-type facts are not checked.
    """
    c = _Collector(raw, lookup_instance)

    if known_keys_only:
        for name in sorted(set(raw) - set(KEYS_BY_NAME)):
            close = [k for k in KEYS_BY_NAME if k.lower() == name.lower()]
            hint = f"did you mean {close[0]}?" if close else "see README for the accepted keys"
            c.problem(name, raw[name], f"unknown key ({hint})")

    for key in KEYS:
        c.check_key(key)
    for rule in CROSS_KEY_RULES:
        rule(c)

    if c.problems:
        raise SettingsError(c.problems)
    return Settings(
        **{_field_name(name): tuple(v) if isinstance(v, list) else v for name, v in c.values.items()},
        warnings=tuple(c.warnings),
    )


# --------------------------------------------------------------------------- instance types


#: The hypervisor the offline mocks report for a type their table lacks (AWS reports
#: "nitro", "xen" or nothing for metal, never this): its facts are unknown offline.
UNKNOWN_OFFLINE_HYPERVISOR = "unknown offline"
#: The processor feature AWS reports for types that run KVM as a virtual instance.
NESTED_VIRTUALIZATION_FEATURE = "nested-virtualization"
KVM_HOST_TYPES_ACCEPTED = (
    "is neither a metal type nor a type whose processor supports nested virtualization: KVM needs "
    "hardware virtualization. Accepted: a metal type (e.g. c5.metal, m5zn.metal) or a virtual type that "
    f"AWS lists with the processor feature {NESTED_VIRTUALIZATION_FEATURE} (C8i, M8i, R8i and their flex "
    "variants, e.g. c8i.4xlarge), which the hosts are launched with")


@dataclass(frozen=True)
class InstanceFacts:
    """What AWS says about an instance type (DescribeInstanceTypes / getInstanceType)."""

    instance_type: str
    hypervisor: str  # "nitro", "xen", or "" for bare metal
    bare_metal: bool
    architectures: tuple[str, ...]
    vcpus: int
    memory_mib: int
    #: ProcessorInfo.SupportedFeatures (getInstanceType's `supported_cpu_features`):
    #: "amd-sev-snp", "nested-virtualization" (EC2 API reference, ProcessorInfo).
    processor_features: tuple[str, ...] = ()

    @property
    def unknown_offline(self) -> bool:
        """The offline plan's stand-in for a type its table lacks: AWS decides at preview."""
        return self.hypervisor == UNKNOWN_OFFLINE_HYPERVISOR

    @property
    def nitro(self) -> bool:
        # Metal types have no hypervisor at all but are all built on the Nitro
        # system (multicast senders included), so either fact makes one Nitro.
        return self.hypervisor == "nitro" or self.bare_metal

    @property
    def nested_virtualization(self) -> bool:
        """A virtual type whose processor can expose VT-x to the instance: KVM runs on it
        when it is launched with the CPU option NestedVirtualization=enabled (C8i, M8i,
        R8i and their flex variants since 2026-02-12). Metal needs no option."""
        return not self.bare_metal and NESTED_VIRTUALIZATION_FEATURE in self.processor_features

    @property
    def runs_kvm(self) -> bool:
        """Hardware virtualization for KVM: metal, or a virtual type with nested virtualization."""
        return self.bare_metal or self.nested_virtualization


def check_instance_type(key: str, name: str, needs_metal: bool, facts: Optional[InstanceFacts]) -> list[Problem]:
    """Problems of one role's instance type, given AWS's facts (None: unknown type)."""
    if facts is None:
        return [Problem(key, name, "is not an instance type offered in this region")]
    if facts.unknown_offline:
        return []
    problems = []
    if not facts.nitro:
        problems.append(Problem(key, name,
                                f"is a {facts.hypervisor or 'non-Nitro'} type: only Nitro instances can send "
                                "multicast, which the VXLAN overlay needs (e.g. c5n.large, m6i.xlarge)"))
    if needs_metal and not facts.runs_kvm:
        problems.append(Problem(key, name, KVM_HOST_TYPES_ACCEPTED))
    if "x86_64" not in facts.architectures:
        problems.append(Problem(key, name,
                                f"is {'/'.join(facts.architectures)}: the CloudStack packages and system VMs "
                                "used here are x86_64"))
    return problems


# --------------------------------------------------------------------------- placement


def choose_availability_zones(
    settings: Settings, zones: Sequence[str], offered: Mapping[str, set[str]], existing_zone: str = ""
) -> tuple[str, str]:
    """(CloudStack subnet's AZ, the DB's second AZ). The first must offer every instance
    type of the stack (metal types are missing from many AZs); `offered` maps each type to
    the AZs that offer it; `existing_zone` is the AZ of an existing CloudStack subnet.
    Raises SettingsError naming the key to change."""
    types = {"routerInstanceType": settings.router_instance_type,
             "managementInstanceType": settings.management_instance_type,
             "hostInstanceType": settings.host_instance_type}
    fitting = [z for z in zones if all(z in offered.get(t, set()) for t in types.values())]
    if existing_zone and settings.availability_zone and existing_zone != settings.availability_zone:
        raise SettingsError([Problem("availabilityZone", settings.availability_zone,
                                     f"subnet {settings.cloudstack_subnet_id} is in {existing_zone}; "
                                     "leave availabilityZone empty or set it to that AZ")])
    requested = settings.availability_zone or existing_zone
    if requested:
        if requested not in zones:
            raise SettingsError([Problem("availabilityZone", requested,
                                         f"is not an available AZ of the region: {', '.join(zones)}")])
        missing = {k: t for k, t in types.items() if requested not in offered.get(t, set())}
        if missing:
            raise SettingsError([Problem("availabilityZone", requested,
                                         f"does not offer {', '.join(f'{t} ({k})' for k, t in missing.items())}; "
                                         f"AZs that offer every type: {', '.join(fitting) or 'none'}")])
        primary = requested
    elif fitting:
        primary = fitting[0]
    else:
        raise SettingsError([Problem("hostInstanceType", settings.host_instance_type,
                                     "no AZ of the region offers the router, management and host types together; "
                                     + "; ".join(f"{t}: {', '.join(sorted(offered.get(t, set()))) or 'nowhere'}"
                                                 for t in types.values()))])
    others = [z for z in zones if z != primary]
    if not others:
        raise SettingsError([Problem("availabilityZone", primary, "RDS needs a second AZ in the region")])
    return primary, others[0]
