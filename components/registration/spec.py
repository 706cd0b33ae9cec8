"""What the registration puts into CloudStack: pure, frozen descriptions (no Pulumi).

The main program builds a `RegistrationSpec` from the settings and the IP plan
(`build_spec`), or field by field. Everything known only at deploy time (the EFS
DNS name, the API endpoint URL, the api-keys secret id) is NOT here: those are
Pulumi inputs of `CloudStackRegistrationArgs`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from components.model.ipplan import GUEST_CIDR_RANGES
from components.model.ldap import TRUSTSTORE_PATH
from components.model.naming import zone_paths

#: CloudStack's limit for KVM clusters (install guide 6.5.1.1).
MAX_KVM_HOSTS_PER_CLUSTER = 16
#: The bridge the overlay script creates on every member; KVM traffic label of
#: the management, guest and public traffic types.
DEFAULT_TRAFFIC_LABEL = "cloudbr0"
#: Providers an advanced zone needs: isolated guest networks use VirtualRouter,
#: VPC tiers VpcVirtualRouter, and the default VPC offering with an internal
#: load balancer InternalLbVm. createPhysicalNetwork adds them disabled.
DEFAULT_PROVIDERS = ("VirtualRouter", "VpcVirtualRouter", "InternalLbVm")
TRAFFIC_TYPES = ("Management", "Guest", "Public")
PROVIDER_ELEMENTS = {
    "VirtualRouter": "virtualrouter",
    "VpcVirtualRouter": "virtualrouter",
    "InternalLbVm": "internallb",
}


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SETTING = re.compile(r"^[a-z][a-z0-9._-]*$")


class SpecError(ValueError):
    """A registration input is wrong; the message names the field, the value and what is accepted."""


def _fail(field_name: str, value: Any, accepted: str) -> None:
    raise SpecError(f"registration: {field_name}={value!r} is invalid: {accepted}")


def _ip(field_name: str, value: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        _fail(field_name, value, "expected an IPv4 address such as 10.100.0.1")
        raise  # unreachable, keeps type checkers quiet


def _name(field_name: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        _fail(field_name, value, "1-32 letters, digits, '-' or '_', starting with a letter or digit")


@dataclass(frozen=True)
class ZoneSpec:
    name: str
    dns1: str            # guests' DNS: the VPC resolver (VPC base + 2), reached through the router
    internal_dns1: str   # system VMs' DNS: the same resolver
    guest_cidr: str
    network_type: str = "Advanced"

    def __post_init__(self) -> None:
        _name("zone.name", self.name)
        _ip("zone.dns1", self.dns1)
        _ip("zone.internal_dns1", self.internal_dns1)
        if ipaddress.IPv4Address(self.dns1).is_link_local:
            _fail("zone.dns1", self.dns1, "CloudStack reserves 169.254.0.0/16; use the VPC resolver (VPC base + 2)")
        if ipaddress.IPv4Address(self.internal_dns1).is_link_local:
            _fail("zone.internal_dns1", self.internal_dns1,
                  "CloudStack reserves 169.254.0.0/16; use the VPC resolver (VPC base + 2)")
        try:
            guest = ipaddress.IPv4Network(self.guest_cidr)
        except ValueError:
            _fail("zone.guest_cidr", self.guest_cidr, "expected an IPv4 CIDR with zero host bits, e.g. 10.1.1.0/24")
            raise
        # ConfigurationManagerImpl (createZone/editZone) checks NetUtils.validateGuestCidr: the
        # guest CIDR must be site-local (RFC 1918) or shared address space (RFC 6598).
        if not any(guest.subnet_of(n) for n in GUEST_CIDR_RANGES):
            _fail("zone.guest_cidr", self.guest_cidr,
                  f"CloudStack accepts only private guest CIDRs: inside {', '.join(map(str, GUEST_CIDR_RANGES))}")
        if self.network_type != "Advanced":
            _fail("zone.network_type", self.network_type, "only 'Advanced' (VLAN guest isolation over the overlay)")


@dataclass(frozen=True)
class PhysicalNetworkSpec:
    name: str
    guest_vlan_start: int
    guest_vlan_end: int
    traffic_label: str = DEFAULT_TRAFFIC_LABEL
    isolation_method: str = "VLAN"
    providers: tuple[str, ...] = DEFAULT_PROVIDERS

    def __post_init__(self) -> None:
        _name("physical_network.name", self.name)
        s, e = self.guest_vlan_start, self.guest_vlan_end
        if not (isinstance(s, int) and isinstance(e, int) and 1 <= s <= e <= 4094):
            _fail("physical_network.guest_vlan_start/end", (s, e), "expected 1 <= start <= end <= 4094")
        if not re.match(r"^[A-Za-z0-9_.-]{1,15}$", self.traffic_label or ""):
            _fail("physical_network.traffic_label", self.traffic_label, "a Linux bridge name such as cloudbr0")
        if self.isolation_method != "VLAN":
            _fail("physical_network.isolation_method", self.isolation_method, "only 'VLAN' (tags inside the overlay)")
        unknown = [p for p in self.providers if p not in PROVIDER_ELEMENTS]
        if unknown or not self.providers or len(set(self.providers)) != len(self.providers):
            _fail("physical_network.providers", self.providers,
                  f"a non-empty list without duplicates of {', '.join(PROVIDER_ELEMENTS)}")

    @property
    def vlan_range(self) -> str:
        return f"{self.guest_vlan_start}-{self.guest_vlan_end}"


@dataclass(frozen=True)
class PodSpec:
    name: str
    gateway: str       # the router's overlay address
    netmask: str       # the overlay's netmask
    start_ip: str      # reserved system range (system VMs' management addresses)
    end_ip: str

    def __post_init__(self) -> None:
        _name("pod.name", self.name)
        gw = _ip("pod.gateway", self.gateway)
        _ip("pod.netmask", self.netmask)
        try:
            net = ipaddress.IPv4Network(f"{self.gateway}/{self.netmask}", strict=False)
        except ValueError:
            _fail("pod.netmask", self.netmask, "expected a contiguous netmask such as 255.255.0.0")
            raise
        start, end = _ip("pod.start_ip", self.start_ip), _ip("pod.end_ip", self.end_ip)
        if not start <= end:
            _fail("pod.start_ip/end_ip", (self.start_ip, self.end_ip), "start must not be after end")
        for n, a in (("pod.start_ip", start), ("pod.end_ip", end)):
            if a not in net:
                _fail(n, str(a), f"must be inside the pod network {net}")
        if start <= gw <= end:
            _fail("pod.gateway", self.gateway, "must not be inside the reserved system range")


@dataclass(frozen=True)
class PublicRangeSpec:
    gateway: str
    netmask: str
    start_ip: str
    end_ip: str
    vlan: str = "untagged"
    #: createVlanIpRange forsystemvms: the range's addresses go to system VMs only
    #: (IpAddressManagerImpl.listAvailablePublicIps), never to tenants' virtual routers
    for_system_vms: bool = False

    @property
    def field_name(self) -> str:
        return "system_public_range" if self.for_system_vms else "public_range"

    def __post_init__(self) -> None:
        f = self.field_name
        gw = _ip(f"{f}.gateway", self.gateway)
        _ip(f"{f}.netmask", self.netmask)
        net = ipaddress.IPv4Network(f"{self.gateway}/{self.netmask}", strict=False)
        start, end = _ip(f"{f}.start_ip", self.start_ip), _ip(f"{f}.end_ip", self.end_ip)
        if not start <= end:
            _fail(f"{f}.start_ip/end_ip", (self.start_ip, self.end_ip), "start must not be after end")
        for n, a in ((f"{f}.start_ip", start), (f"{f}.end_ip", end)):
            if a not in net:
                _fail(n, str(a), f"must be inside the public network {net}")
        if start <= gw <= end:
            _fail(f"{f}.gateway", self.gateway, "must not be inside the public range")
        if self.vlan != "untagged" and not re.match(r"^\d{1,4}$", self.vlan):
            _fail(f"{f}.vlan", self.vlan, "'untagged' or a VLAN id")
        if not isinstance(self.for_system_vms, bool):
            _fail(f"{f}.for_system_vms", self.for_system_vms, "true or false")

    @property
    def text(self) -> str:
        """"first-last", as the console-forwards resource and the router take it."""
        return f"{self.start_ip}-{self.end_ip}"

    def overlaps(self, start_ip: str, end_ip: str) -> bool:
        a, b = ipaddress.IPv4Address(self.start_ip), ipaddress.IPv4Address(self.end_ip)
        return a <= ipaddress.IPv4Address(end_ip) and ipaddress.IPv4Address(start_ip) <= b


@dataclass(frozen=True)
class ClusterSpec:
    index: int
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.index, int) or self.index < 0:
            _fail("cluster.index", self.index, "a non-negative integer")
        _name(f"clusters[{self.index}].name", self.name)


@dataclass(frozen=True)
class HostSpec:
    index: int
    overlay_ip: str
    cluster_index: int
    username: str   # no password: the management server logs in with its own SSH key

    def __post_init__(self) -> None:
        if not isinstance(self.index, int) or self.index < 0:
            _fail("host.index", self.index, "a non-negative integer")
        _ip(f"hosts[{self.index}].overlay_ip", self.overlay_ip)
        if not _USER.match(self.username or ""):
            _fail(f"hosts[{self.index}].username", self.username, "a Linux user name such as 'cloudstack' or 'root'")

    @property
    def url(self) -> str:
        # addHost takes the host by URL; KVM hosts are added by their overlay address.
        return f"http://{self.overlay_ip}"


#: AWS's recommended NFS client options for EFS (without noresvport a mount can
#: hang after a network blip). KVM hosts mount primary storage through libvirt,
#: which takes them from the pool's `nfsmountopts` detail (CloudStack 4.20+,
#: apache/cloudstack PR #8947; 4.19 stores the detail and ignores it).
EFS_NFS_MOUNT_OPTIONS = "vers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport"
_MOUNT_OPTION = re.compile(r"^[a-z][a-z0-9_]*(=[A-Za-z0-9_.:/-]+)?$")


@dataclass(frozen=True)
class StorageSpec:
    primary_name: str
    secondary_name: str
    primary_path: str     # /<zone>/primary on EFS
    secondary_path: str   # /<zone>/secondary on EFS
    primary_nfs_mount_options: str = EFS_NFS_MOUNT_OPTIONS  # "opt[=value],..." for the KVM hosts' mounts

    def __post_init__(self) -> None:
        _name("storage.primary_name", self.primary_name)
        _name("storage.secondary_name", self.secondary_name)
        for n, p in (("storage.primary_path", self.primary_path), ("storage.secondary_path", self.secondary_path)):
            if not re.match(r"^(/[A-Za-z0-9_.-]+)+$", p or ""):
                _fail(n, p, "an absolute path such as /zone1/primary")
        # StorageManagerImpl refuses a key given twice and an option with two '='.
        opts = (self.primary_nfs_mount_options or "").split(",")
        keys = [o.split("=", 1)[0] for o in opts]
        if not all(_MOUNT_OPTION.match(o) for o in opts) or len(set(keys)) != len(keys):
            _fail("storage.primary_nfs_mount_options", self.primary_nfs_mount_options,
                  "comma-separated NFS mount options opt[=value], each at most once, e.g. vers=4.1,hard")

    def primary_url(self, efs_dns: str) -> str:
        return f"nfs://{efs_dns}{self.primary_path}"

    def secondary_url(self, efs_dns: str) -> str:
        return f"nfs://{efs_dns}{self.secondary_path}"


@dataclass(frozen=True)
class GlobalSetting:
    name: str
    value: str
    why: str = ""

    def __post_init__(self) -> None:
        if not _SETTING.match(self.name or ""):
            _fail("global_settings.name", self.name, "a CloudStack setting name such as storage.overprovisioning.factor")
        if not isinstance(self.value, str):
            _fail(f"global_settings[{self.name}].value", self.value, "a string")


@dataclass(frozen=True)
class LdapSpec:
    """The company directory CloudStack signs users in with (components/model/ldap.py's
    LdapDirectory without its secrets): `settings` the plain `ldap.*` settings (name → value),
    `servers` (host, port) for addLdapConfiguration, `links` (domain path, GROUP|OU, the DN,
    account type 0|2) for linkDomainToLdap. The bind password is a deploy-time input: the ARN
    and version of the secret holding it (CloudStackRegistrationArgs)."""

    settings: tuple[GlobalSetting, ...]
    servers: tuple[tuple[str, int], ...]
    links: tuple[tuple[str, str, str, int], ...] = ()
    #: LDAPS: ldap.truststore names this file on every management server, and
    #: ldap.truststore.password comes from the truststore secret (a deploy-time input); "": LDAP
    truststore: str = ""

    def __post_init__(self) -> None:
        if self.truststore and not self.truststore.startswith("/"):
            _fail("ldap.truststore", self.truststore, "an absolute path on the management servers")
        if not self.servers or len(set(self.servers)) != len(self.servers):
            _fail("ldap.servers", self.servers, "at least one (host, port), each once")
        for host, port in self.servers:
            if not isinstance(port, int) or not 1 <= port <= 65535:
                _fail("ldap.servers.port", port, "a TCP port 1..65535")
        if not any(s.name == "ldap.basedn" for s in self.settings):
            _fail("ldap.settings", [s.name for s in self.settings], "ldap.basedn among them (linkDomainToLdap "
                  "refuses a domain without a base DN)")
        for domain, kind, name, account_type in self.links:
            if kind not in ("GROUP", "OU") or account_type not in (0, 2) or not name:
                _fail(f"ldap.links[{domain}]", (kind, name, account_type), "type GROUP or OU, a DN, account type 0 or 2")
        slugs = [ldap_link_resource_name(link[0]) for link in self.links]
        if len(set(slugs)) != len(slugs):
            _fail("ldap.links", [link[0] for link in self.links], "each domain at most once")

    @classmethod
    def of(cls, directory: Any) -> "LdapSpec":
        """From a components.model.ldap.LdapDirectory."""
        return cls(settings=tuple(GlobalSetting(n, v, "the company directory (ldap)")
                                  for n, v in directory.settings().items()),
                   servers=tuple((s.host, s.port) for s in directory.servers),
                   links=tuple((k.domain, k.type, k.name, k.account_type_id) for k in directory.links),
                   truststore=TRUSTSTORE_PATH if directory.ldaps else "")


def ldap_server_resource_name(host: str, port: int) -> str:
    return f"ldap-server-{host}-{port}"


def ldap_link_resource_name(domain: str) -> str:
    """ROOT → ldap-link-ROOT, ROOT/sales → ldap-link-ROOT.sales ('/' becomes '.'; two domains
    that would get the same name are refused by LdapSpec)."""
    return "ldap-link-" + domain.replace("/", ".")


@dataclass(frozen=True)
class Timeouts:
    """Seconds. Defaults sized for a real first boot of the management server."""

    secret_wait: float = 45 * 60      # until the mgmt server has written <prefix>/api-keys
    api_wait: float = 45 * 60         # until the API answers an authenticated call
    async_job: float = 30 * 60        # one async job (createPhysicalNetwork, maintenance job, ...)
    host_up: float = 20 * 60          # addHost → the agent connects (state Up)
    maintenance: float = 60 * 60      # PrepareForMaintenance → Maintenance (live-migrating VMs off)
    transient_retry: float = 10 * 60  # retrying 530/533/connection refused on one step
    poll_interval: float = 10.0       # between polls of jobs, host states, secret, API
    http_timeout: float = 60.0        # one HTTP request (commands below excepted)
    #: addHost answers only once the agent is Up: LibvirtServerDiscoverer.find connects over
    #: SSH (60 s connect + 60 s kex), runs cloudstack-setup-agent, then waitForHostConnect
    #: polls 10 x 30 s; 15 minutes covers that with room for a slow agent setup.
    add_host_http: float = 15 * 60
    #: createStoragePool (zone-wide) sends ModifyStoragePoolCommand to every Up host and waits
    #: for each (the agent command `wait`, 1800 s by default); addImageStore seeds the system VM
    #: template into the store (SystemVmTemplateRegistration) before it answers.
    storage_http: float = 30 * 60
    system_vms: float = 30 * 60       # zone enabled → secondary storage VM and console proxy Running

    def __post_init__(self) -> None:
        for k, v in self.as_dict().items():
            if not isinstance(v, (int, float)) or v <= 0:
                _fail(f"timeouts.{k}", v, "a positive number of seconds")

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def http_timeout_for(self, command: str) -> float:
        """Seconds to wait for the answer to one request of `command`."""
        if command == "addHost":
            return self.add_host_http
        if command in ("createStoragePool", "addImageStore"):
            return self.storage_http
        return self.http_timeout

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Timeouts":
        return cls(**{k: float(v) for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class RegistrationSpec:
    zone: ZoneSpec
    physical_network: PhysicalNetworkSpec
    pod: PodSpec
    public_range: PublicRangeSpec
    clusters: tuple[ClusterSpec, ...]
    hosts: tuple[HostSpec, ...]
    storage: StorageSpec
    global_settings: tuple[GlobalSetting, ...]
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: `pulumi destroy` goes on although CloudStack still has VMs (destroyWithRunningVms)
    allow_destroy_with_vms: bool = False
    #: publish the console proxy's address for the router (the console-forwards resource);
    #: planned only when the registration is given the parameter to write it to
    consoles: bool = True
    #: the system VMs' public range (for_system_vms, ipplan.IpPlan.system_public_range): the
    #: console proxy's public IP, which the router forwards to, comes from it; None: not registered
    system_public_range: PublicRangeSpec | None = None
    #: the company directory users sign in with (None: none)
    ldap: LdapSpec | None = None
    #: every management server's overlay address, the first server first: a running server
    #: not among them is drained (the management-servers resource); (): none is
    management_servers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for i, address in enumerate(self.management_servers):
            _ip(f"management_servers[{i}]", address)
        idx = [c.index for c in self.clusters]
        if len(set(idx)) != len(idx):
            _fail("clusters", idx, "cluster indexes must be unique")
        names = [c.name for c in self.clusters]
        if len(set(names)) != len(names):
            _fail("clusters", names, "cluster names must be unique")
        if not self.hosts:
            _fail("hosts", (), "at least one host (primary storage needs an Up host in the zone)")
        hidx = [h.index for h in self.hosts]
        if len(set(hidx)) != len(hidx):
            _fail("hosts", hidx, "host indexes must be unique")
        ips = [h.overlay_ip for h in self.hosts]
        if len(set(ips)) != len(ips):
            _fail("hosts", ips, "host overlay addresses must be unique")
        for h in self.hosts:
            if h.cluster_index not in idx:
                _fail(f"hosts[{h.index}].cluster_index", h.cluster_index, f"one of the clusters' indexes {idx}")
        counts: dict[int, int] = {}
        for h in self.hosts:
            counts[h.cluster_index] = counts.get(h.cluster_index, 0) + 1
        for c, n in counts.items():
            if n > MAX_KVM_HOSTS_PER_CLUSTER:
                _fail(f"clusters[{c}]", n, f"at most {MAX_KVM_HOSTS_PER_CLUSTER} KVM hosts per cluster")
        empty = [c for c in idx if c not in counts]
        if empty:
            # An empty cluster would have no host to migrate to and nothing to run; a
            # scale-in must remove it together with its last host.
            _fail("clusters", empty, "every cluster needs at least one host")
        snames = [s.name for s in self.global_settings]
        if len(set(snames)) != len(snames):
            _fail("global_settings", snames, "each setting at most once")
        pod_start, pod_end = (ipaddress.IPv4Address(self.pod.start_ip), ipaddress.IPv4Address(self.pod.end_ip))
        pub_start, pub_end = (ipaddress.IPv4Address(self.public_range.start_ip),
                              ipaddress.IPv4Address(self.public_range.end_ip))
        if pub_start <= pod_end and pod_start <= pub_end:
            # ConfigurationManagerImpl.createVlanIpRange refuses a public range that overlaps the
            # pod's reserved system range ("...overlaps with the pod's IP range").
            _fail("public_range.start_ip/end_ip", (self.public_range.start_ip, self.public_range.end_ip),
                  f"must not overlap the pod's reserved system range {self.pod.start_ip}-{self.pod.end_ip}")
        if self.pod.gateway != self.public_range.gateway:
            _fail("public_range.gateway", self.public_range.gateway,
                  f"the same overlay gateway as the pod ({self.pod.gateway}): the router")
        if self.public_range.for_system_vms:
            _fail("public_range.for_system_vms", True, "false: the tenants' range (system VMs have "
                  "system_public_range)")
        sys_range = self.system_public_range
        if sys_range is not None:
            if not sys_range.for_system_vms:
                _fail("system_public_range.for_system_vms", sys_range.for_system_vms,
                      "true (createVlanIpRange forsystemvms)")
            # one public network: the same gateway, netmask and VLAN as the tenants' range
            for name in ("gateway", "netmask", "vlan"):
                if getattr(sys_range, name) != getattr(self.public_range, name):
                    _fail(f"system_public_range.{name}", getattr(sys_range, name),
                          f"the public range's {name} ({getattr(self.public_range, name)})")
            # ConfigurationManagerImpl.createVlanIpRange refuses overlapping ranges
            if sys_range.overlaps(self.public_range.start_ip, self.public_range.end_ip):
                _fail("system_public_range.start_ip/end_ip", sys_range.text,
                      f"must not overlap the public range {self.public_range.text}")
            if sys_range.overlaps(self.pod.start_ip, self.pod.end_ip):
                _fail("system_public_range.start_ip/end_ip", sys_range.text,
                      f"must not overlap the pod's reserved system range {self.pod.start_ip}-{self.pod.end_ip}")

    @property
    def first_host(self) -> HostSpec:
        return min(self.hosts, key=lambda h: h.index)

    @property
    def first_cluster(self) -> ClusterSpec:
        return min(self.clusters, key=lambda c: c.index)


def clusters_for(host_count: int, hosts_per_cluster: int = MAX_KVM_HOSTS_PER_CLUSTER,
                 instance_types: Sequence[str] | None = None) -> list[int]:
    """Cluster index of each host: a new cluster wherever the instance type changes from
    one host index to the next (`instance_types[i]`: host i's type), and every
    `hosts_per_cluster` hosts within a run of one type. Hosts of different types never share a
    cluster: live migration needs the same CPU model on both ends (the KVM hosts run
    guests with guest.cpu.mode=host-passthrough). A host's cluster depends only on the
    hosts below it, so scaling (which adds or removes the highest indexes) never moves
    an existing host; with one type this is exactly `i // hosts_per_cluster`."""
    if not isinstance(hosts_per_cluster, int) or not 1 <= hosts_per_cluster <= MAX_KVM_HOSTS_PER_CLUSTER:
        _fail("hosts_per_cluster", hosts_per_cluster, f"an integer 1..{MAX_KVM_HOSTS_PER_CLUSTER}")
    if not isinstance(host_count, int) or host_count < 1:
        _fail("host_count", host_count, "an integer >= 1")
    if instance_types is not None and len(instance_types) != host_count:
        _fail("instance_types", list(instance_types), f"one instance type per host ({host_count})")
    out: list[int] = []
    run_start = 0  # first host index of the current run of one instance type
    for i in range(host_count):
        if i and instance_types is not None and instance_types[i] != instance_types[i - 1]:
            run_start = i
        if i == 0:
            out.append(0)
        elif i == run_start or (i - run_start) % hosts_per_cluster == 0:
            out.append(out[-1] + 1)
        else:
            out.append(out[-1])
    return out


#: An 802.1Q tag: a guest frame on a VLAN is this much longer inside VXLAN.
VLAN_TAG_BYTES = 4


def default_global_settings(management_ip: str | Sequence[str], overlay_cidr: str,
                            overlay_mtu: int = 8450) -> tuple[GlobalSetting, ...]:
    """The settings the zone needs on EC2, each with the reason it is set.
    `management_ip`: the management servers' overlay addresses (one as a str, or a sequence,
    the first server first); `overlay_mtu`: the overlay's MTU in bytes (settings' overlayMtu,
    1280..8450)."""
    servers = [management_ip] if isinstance(management_ip, str) else list(management_ip)
    if not servers:
        _fail("management_ip", servers, "at least one management server's overlay address")
    for i, address in enumerate(servers):
        _ip(f"management_ip[{i}]", address)
    try:
        ipaddress.IPv4Network(overlay_cidr)
    except ValueError:
        _fail("overlay_cidr", overlay_cidr, "an IPv4 CIDR such as 10.100.0.0/16")
    if not isinstance(overlay_mtu, int) or not 1280 <= overlay_mtu <= 8450:
        _fail("overlay_mtu", overlay_mtu, "an integer 1280..8450 (the overlay MTU)")
    guest_mtu = str(overlay_mtu - VLAN_TAG_BYTES)
    tagged = (f"guest and public networks are VLANs inside the overlay: a tagged frame is {VLAN_TAG_BYTES} bytes "
              f"longer, so the VR's MTU is at most overlayMtu - {VLAN_TAG_BYTES} and a flooded frame stays "
              "within the Transit Gateway's 8500 bytes (zone-scoped since 4.18, NetworkService.java; "
              "without allow.end.users.to.specify.vr.mtu every network gets exactly this MTU)")
    return (
        GlobalSetting("storage.overprovisioning.factor", "1",
                      "EFS reports 8 EiB free; with the default factor 2 CloudStack's capacity overflows"),
        GlobalSetting("host", ",".join(servers),
                      "the addresses agents and system VMs connect to, every management server's (they fail "
                      "over along the list); CloudStack overwrites it on first start with the default-route "
                      "(underlay) address, which the overlay cannot route back"),
        GlobalSetting("indirect.agent.lb.algorithm", "roundrobin",
                      "each agent gets the server list rotated by its place among the zone's hosts "
                      "(IndirectAgentLBRoundRobinAlgorithm), so the agents spread over the servers instead of "
                      "all starting on the first (the default, static); pushed to the agents with `host`"),
        GlobalSetting("management.network.cidr", overlay_cidr,
                      "the management network is the overlay, not the EC2 subnet"),
        GlobalSetting("migrate.vm.across.clusters", "true",
                      "a scale-in can empty a whole cluster; with zone-wide primary storage on EFS the VMs "
                      "may live-migrate to the remaining clusters instead of blocking the maintenance"),
        GlobalSetting("vr.public.interface.max.mtu", guest_mtu, tagged),
        GlobalSetting("vr.private.interface.max.mtu", guest_mtu, tagged),
        GlobalSetting("consoleproxy.launch.max", "1",
                      "one console proxy per zone: the router forwards the console address to one console proxy, "
                      "and CloudStack assigns sessions to any running one (ConsoleProxyManagerImpl "
                      "assignProxyFromRunningPool), so a second one (launched for standby capacity) would get "
                      "sessions nobody reaches. Read at each launch (ConsoleProxyManagerImpl.allowToLaunchNew; "
                      "ConsoleProxyManager.ConsoleProxyLaunchMax, zone-scoped, default 10)"),
        GlobalSetting("system.vm.public.ip.reservation.mode.strictness", "true",
                      "the system VMs' public range (forsystemvms) is theirs alone: with the default false, older "
                      "releases give its addresses to tenants once the public range is exhausted "
                      "(IpAddressManagerImpl: the forSystemVms filter only when strict; apache/cloudstack #4310, "
                      "#5902), and a console forward could then reach a tenant. Read when the management server "
                      "starts in those releases: its boot sets it before its restart"),
    )


def build_spec(
    *,
    plan: Any,
    zone_name: str,
    host_username: str,
    hosts_per_cluster: int = MAX_KVM_HOSTS_PER_CLUSTER,
    timeouts: Timeouts | None = None,
    extra_settings: Iterable[GlobalSetting] = (),
    overlay_mtu: int = 8450,
    host_instance_types: Sequence[str] | None = None,
    allow_destroy_with_vms: bool = False,
    ldap: LdapSpec | None = None,
) -> RegistrationSpec:
    """Build the spec from `components.model.ipplan.IpPlan` (duck-typed: overlay, router,
    management_servers, hosts, system_range, public_range, guest_vlans, guest_cidr, zone_dns,
    and system_public_range if it has one: the system VMs' public range, same gateway/netmask).
    `host_instance_types[i]`: host i's EC2 instance type (hosts of different types go to
    different clusters, see `clusters_for`); None: all hosts of one type."""
    overlay = ipaddress.IPv4Network(str(plan.overlay))
    netmask = str(overlay.netmask)
    router = str(plan.router)
    host_ips = [str(a) for a in plan.hosts]
    cluster_of = clusters_for(len(host_ips), hosts_per_cluster, host_instance_types)
    clusters = tuple(ClusterSpec(c, cluster_name(zone_name, c)) for c in sorted(set(cluster_of)))
    hosts = tuple(HostSpec(i, ip, cluster_of[i], host_username) for i, ip in enumerate(host_ips))
    servers = tuple(str(a) for a in plan.management_servers)
    settings = default_global_settings(servers, str(overlay), overlay_mtu)
    extra = tuple(extra_settings)
    overridden = {s.name for s in extra}
    settings = tuple(s for s in settings if s.name not in overridden) + extra
    paths = zone_paths(zone_name)
    system_public = getattr(plan, "system_public_range", None)
    return RegistrationSpec(
        zone=ZoneSpec(zone_name, str(plan.zone_dns), str(plan.zone_dns), str(plan.guest_cidr)),
        physical_network=PhysicalNetworkSpec(f"{zone_name}-physnet", plan.guest_vlans.first, plan.guest_vlans.last),
        pod=PodSpec(f"{zone_name}-pod", router, netmask, str(plan.system_range.start), str(plan.system_range.end)),
        public_range=PublicRangeSpec(router, netmask, str(plan.public_range.start), str(plan.public_range.end)),
        clusters=clusters,
        hosts=hosts,
        storage=StorageSpec(f"{zone_name}-primary", f"{zone_name}-secondary",
                            paths["primary"], paths["secondary"]),
        global_settings=settings,
        timeouts=timeouts or Timeouts(),
        allow_destroy_with_vms=allow_destroy_with_vms,
        ldap=ldap,
        system_public_range=None if system_public is None else PublicRangeSpec(
            router, netmask, str(system_public.start), str(system_public.end), for_system_vms=True),
        management_servers=servers,
    )


def cluster_name(zone_name: str, index: int) -> str:
    return f"{zone_name}-cluster-{index}"


def host_indexes(hosts: Sequence[HostSpec]) -> list[int]:
    return sorted(h.index for h in hosts)
