"""EC2 user data of the router, the management server and the KVM hosts.

Pure module (no Pulumi): the components resolve their Outputs, build one of the
frozen `*Boot` dataclasses from PLAIN values and call `render_*_user_data`, which
returns the text for `aws.ec2.Instance(user_data_base64=...)`.

The user data is a bash script, gzip-compressed (cloud-init detects gzip) so that
it fits EC2's 16 KiB limit. It carries only what the instance needs before its
network works: the static scripts common.sh, overlay-network.sh and the stage-2
launcher stage2.sh (package data of `userdata/`, checked by shellcheck as real
files), the systemd units, and two environment files of NON-secret settings;
then it runs the launcher, which fetches the ROLE script (router.sh,
management-server.sh, kvm-host.sh) from the deployment's private S3 bucket
(components/resources/bootstore.py), checks its sha256 and execs it (docs/boot.md):

  /usr/local/lib/cloudstack-ec2/{common.sh,stage2.sh,overlay-network.sh}
      (+ overlay-router.sh, the router's part of overlay-network.sh, on the router)
  /usr/local/lib/cloudstack-ec2/<role script>   installed by stage2.sh (verified)
  /usr/local/sbin/cloudstack-ec2-boot -> stage2.sh (re-run entry point)
  /etc/systemd/system/cloudstack-ec2-{overlay,boot}.service (+ the members' firewall)
  /etc/cloudstack-ec2/boot.env     settings of the scripts (CSEC2_*, with CSEC2_STAGE2_*)
  /etc/cloudstack-ec2/overlay.env  settings of overlay-network.sh

No secret value is ever an input: the scripts read secrets from Secrets Manager
at run time; only the secrets' names/ARNs are rendered. The output is
deterministic (gzip mtime 0), so re-rendering unchanged inputs does not touch
the instances.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Mapping, Optional

from components.model import aws_constraints
from components.model import ipplan
from components.model import rules

#: EC2 refuses user data larger than this (bytes, before base64).
USER_DATA_LIMIT_BYTES = 16384

#: CloudStack releases from which the management package ships the system VM
#: template and registers it itself (nothing to seed): the oldest supported.
FIRST_SUPPORTED_CLOUDSTACK = (4, 16)
OS_CODENAMES = tuple(rules.UBUNTU_RELEASES.values())
DEFAULT_REPO_URL = "https://download.cloudstack.org/ubuntu"
DEFAULT_KEY_URL = "https://download.cloudstack.org/release.asc"

# Where the user data puts things on the instance (the scripts' production
# defaults; see userdata/common.sh).
LIB_DIR = "/usr/local/lib/cloudstack-ec2"
ETC_DIR = "/etc/cloudstack-ec2"
UNIT_DIR = "/etc/systemd/system"
BOOT_LINK = "/usr/local/sbin/cloudstack-ec2-boot"

ROLE_SCRIPTS = {"router": "router.sh", "management": "management-server.sh", "kvm-host": "kvm-host.sh"}
#: The launcher the user data runs: it fetches, verifies and execs the role script.
STAGE2_LAUNCHER = "stage2.sh"
#: Where the role scripts go in the deployment's boot-script bucket: one object per
#: script version, named by the sha256 of its bytes (so a changed script is a new
#: object and an instance only ever runs the version its user data names).
STAGE2_KEY_PREFIX = "boot/"
ROLE_UNITS = {
    "router": ("cloudstack-ec2-overlay.service", "cloudstack-ec2-boot.service",
               "cloudstack-ec2-forwards.service", "cloudstack-ec2-forwards.timer"),
    "management": ("cloudstack-ec2-overlay.service", "cloudstack-ec2-boot.service",
                   "cloudstack-ec2-host-firewall.service"),
    "kvm-host": ("cloudstack-ec2-overlay.service", "cloudstack-ec2-boot.service",
                 "cloudstack-ec2-host-firewall.service"),
}

#: The overlay bridge (CloudStack's KVM traffic label) and its VXLAN port, as
#: userdata/overlay-network.sh names them (BRIDGE, VXLAN_DEV; a test compares).
#: The port must match the KVM agent's physical-NIC patterns (^eth...,
#: LibvirtComputingResource.ifNamePatterns) and contain neither "vxlan" nor
#: "vnet" (BridgeVifDriver.deleteVnetBr reads those in a bridge's port list).
OVERLAY_BRIDGE = "cloudbr0"
OVERLAY_PORT = "ethovl0"
#: Linux interface names: IFNAMSIZ 16 bytes including the terminating NUL.
LINUX_IFNAME_MAX = 15


def guest_vlan_devices(vlan: int, port: Optional[str] = None) -> tuple[str, str]:
    """(bridge, VLAN device) the KVM agent creates for guest VLAN `vlan` on `port`
    (default OVERLAY_PORT): `br<port>-<vlan>` (BridgeVifDriver.generateVnetBrName)
    and `<port>.<vlan>` (scripts/vm/network/vnet/modifyvlan.sh). Each must fit
    LINUX_IFNAME_MAX."""
    port = port or OVERLAY_PORT
    return f"br{port}-{vlan}", f"{port}.{vlan}"


class UserDataError(ValueError):
    """A bad renderer input; the message names the field, the value and what is accepted."""


# ------------------------------------------------------------------ inputs ----

@dataclass(frozen=True)
class OverlayConfig:
    """Settings of userdata/overlay-network.sh (its OVERLAY_*/VXLAN_* variables)."""
    role: str                       # "router" | "member"
    vxlan_id: int                   # 1..16777215
    vxlan_group: str                # IPv4 multicast group, e.g. "239.255.0.100"
    overlay_address: str            # this instance's "a.b.c.d/prefix" on cloudbr0
    overlay_mtu: int                # 1280..8450
    vpc_cidr: str                   # the VPC's IPv4 CIDR
    overlay_gateway: Optional[str] = None   # members: the router's overlay address
    vxlan_port: int = 4789
    router_dnat: tuple[str, ...] = ()       # router: "proto:port:target_ip:target_port"
    underlay_dev: Optional[str] = None      # default: the default-route device
    #: Router (required there): the subnet where system VMs may reach NFS, i.e. the
    #: dedicated CloudStack subnet holding the EFS mount target, e.g. "10.0.0.0/24".
    storage_cidr: Optional[str] = None
    #: Router: IPv4 CIDRs tenants may reach besides DNS and the internet (tenantVpcAccessCidrs).
    tenant_vpc_access: tuple[str, ...] = ()
    #: Router: its console address, the second private IPv4 of its ENI (inside vpc_cidr),
    #: whose ports 80 and 8080 it forwards to the console proxy (components/model/consoles.py;
    #: overlay-network.sh CONSOLE_ADDRESS). None: no console address.
    console_address: Optional[str] = None
    #: Router: "first-last", the system VMs' public range (ipplan system_public_range,
    #: registered with forsystemvms, so tenants never get its addresses); a console
    #: forward's target must lie in it (overlay-network.sh CONSOLE_RANGE). None: unset
    #: (then the router accepts no console forward).
    console_range: Optional[str] = None
    #: Router: its tenants' address, the third private IPv4 of its ENI (inside vpc_cidr, not
    #: console_address), with an Elastic IP of its own: system VMs' and tenants' traffic to
    #: the internet leaves with it, never with the infrastructure's (overlay-network.sh
    #: TENANT_ADDRESS). None: they leave with the router's own address.
    tenant_address: Optional[str] = None
    #: Router: who answers tenants' DNS (overlay-network.sh TENANT_DNS): None, the VPC resolver;
    #: "forward", the router's resolver forwarding to it (tenantPrivateDns); "recurse", the
    #: router's resolver recursing from the root (needs tenant_address).
    tenant_dns: Optional[str] = None
    #: Router: public IPv4 CIDRs tenants never reach unless tenant_vpc_access names them: the
    #: gateway-endpoint services' prefixes and what the VPC routes to VPNs or peers
    #: (components/model/tenantlimits.refused_to_tenants; overlay-network.sh TENANT_REFUSED).
    tenant_refused: tuple[str, ...] = ()

    @property
    def ip(self) -> str:
        return str(ipaddress.ip_interface(self.overlay_address).ip)

    @property
    def cidr(self) -> str:
        return str(ipaddress.ip_interface(self.overlay_address).network)

    @property
    def classes(self) -> ipplan.AddressClasses:
        """Who is infrastructure, system VM or tenant on this overlay (components/model/ipplan.py)."""
        return ipplan.address_classes(ipaddress.IPv4Interface(self.overlay_address).network)


@dataclass(frozen=True)
class BootWaits:
    """Bounds (seconds) of every wait of the boot scripts."""
    parameters_seconds: int = 3600   # SSM parameters db-endpoint / efs-dns (RDS takes a while)
    secrets_seconds: int = 600       # each secret's value
    database_seconds: int = 1800     # the database accepting connections
    api_seconds: int = 1800          # the API answering on localhost:8080 (first start migrates the DB)
    ssh_key_seconds: int = 7200      # KVM hosts: what the management server publishes (its package
                                     # version, its SSH public key)
    network_seconds: int = 1800      # members: the overlay gateway (router) and the internet through it
    interval_seconds: int = 10       # between two attempts (and the back-off step of retried installs)


@dataclass(frozen=True)
class ManagementSecrets:
    """Names or ARNs (NOT values) of the Secrets Manager secrets the management server reads."""
    db_master: str        # {"username","password"}: RDS master user
    db_cloud: str         # {"username","password"}: CloudStack's database user
    cloudstack_keys: str  # {"management_key","database_key"}
    admin: str            # {"username","password"}: CloudStack admin
    api_keys: str         # {"apikey","secretkey"}: written by the management server


@dataclass(frozen=True)
class RouterBoot:
    aws_region: str
    prefix: str                      # "/cloudstack-ec2/<stack>"
    fqdn: str                        # e.g. "router.cloudstack.internal"
    overlay: OverlayConfig           # role "router"
    boot_bucket: str                 # the deployment's boot-script bucket (BootScriptBucket.bucket_name)
    waits: BootWaits = field(default_factory=BootWaits)


@dataclass(frozen=True)
class ManagementBoot:
    aws_region: str
    prefix: str
    fqdn: str
    overlay: OverlayConfig           # role "member"; its address is the management IP
    secrets: ManagementSecrets
    boot_bucket: str                 # the deployment's boot-script bucket (BootScriptBucket.bucket_name)
    cloudstack_version: str = "4.22"  # "X.Y" (newest patch) or "X.Y.Z" (pinned)
    os_codename: str = "noble"
    zone_name: str = "zone1"
    efs_mount_point: str = "/mnt/cloudstack-efs"
    repo_url: str = DEFAULT_REPO_URL
    key_url: str = DEFAULT_KEY_URL
    waits: BootWaits = field(default_factory=BootWaits)
    #: The console address's Elastic IP (components/model/consoles.py): written as the
    #: cloud.configuration rows consoleproxy.static.publicIp (and .port = 80) before
    #: the registration starts. "": nothing written.
    console_address: str = ""


@dataclass(frozen=True)
class KvmHostBoot:
    aws_region: str
    prefix: str
    fqdn: str
    overlay: OverlayConfig           # role "member"; its address is the host's (addHost url)
    boot_bucket: str                 # the deployment's boot-script bucket (BootScriptBucket.bucket_name)
    cloudstack_version: str = "4.22"
    os_codename: str = "noble"
    host_user: str = "root"          # the user the management server logs in as (addHost username)
    repo_url: str = DEFAULT_REPO_URL
    key_url: str = DEFAULT_KEY_URL
    waits: BootWaits = field(default_factory=BootWaits)


# ------------------------------------------------------------------- names ----

# The prefix as components.model.naming.parameter_root builds it (the deployment id is optional:
# stacks deployed before it existed keep /cloudstack-ec2/<stack>).
_PREFIX = re.compile(r"^/cloudstack-ec2/[A-Za-z0-9][A-Za-z0-9._-]{0,62}(/[0-9a-f]{8})?$")


# -------------------------------------------------------------- validation ----

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Values that come from the stack settings are checked by the settings' own rules
# (components/model/rules.py); only the rules of values that do not come from settings live here.
_VERSION = rules.VERSION
_ZONE = rules.ZONE_NAME
_PATH = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_URL = re.compile(r"^https://[A-Za-z0-9.-]+(/[A-Za-z0-9._~-]+)*/?$")
# A secret's ARN, or its name under the project's hierarchy: a bare word could
# be a password passed by mistake.
_SECRET_ID = re.compile(r"^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:|cloudstack-ec2/)"
                        r"[A-Za-z0-9/_+=.@-]{1,400}$")
_DEV = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_DNAT = re.compile(rf"^{rules.DNAT}$")
# Things that look like credentials: an input with one is refused outright.
_SECRET_LIKE = (
    (re.compile(r"(?:A3T[A-Z0-9]|AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}"), "an AWS access key id"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"(?i)(passw(or)?d|passwd|pwd|secret_?key|api_?key|token)\s*[=:]"), "a credential assignment"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "credentials in a URL"),
)


def _check_str(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise UserDataError(
            f"{name}: expected a plain str, got {type(value).__name__} {value!r}"
            " (resolve Pulumi Outputs with .apply() before rendering)")
    for pattern, what in _SECRET_LIKE:
        if pattern.search(value):
            raise UserDataError(f"{name}: the value looks like {what}; secret values are never rendered"
                                " into user data (the scripts read them from Secrets Manager)")
    if any(c in value for c in "\"$`\\\n\r'"):
        raise UserDataError(f"{name}: {value!r} contains a quote, '$', '`', '\\' or a line break")
    return value


def _ip_value(name: str, value: object, kind: type):
    """`value` (a plain str, checked as _check_str does) as `kind` (ipaddress.IPv4Address,
    IPv4Interface or IPv4Network), or None when it does not parse: the caller raises
    with what it accepts."""
    _check_str(name, value)
    try:
        return kind(value)
    except ValueError:
        return None


def _check_match(name: str, value: object, pattern: re.Pattern, accepted: str) -> str:
    _check_str(name, value)
    if not pattern.match(value):  # type: ignore[arg-type]
        raise UserDataError(f"{name}: {value!r} is not accepted; expected {accepted}")
    return value  # type: ignore[return-value]


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserDataError(f"{name}: expected an int in {low}..{high}, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise UserDataError(f"{name}: {value} is out of range; accepted {low}..{high}")
    return value


def _check_prefix(name: str, value: object) -> str:
    return _check_match(name, value, _PREFIX, "'/cloudstack-ec2/<stack>[/<deployment id>]' (see parameter_root())")


def _check_fqdn(name: str, value: object) -> str:
    _check_str(name, value)
    labels = value.split(".")  # type: ignore[union-attr]
    if len(labels) < 2 or len(value) > 253 or not all(_LABEL.match(x) for x in labels):  # type: ignore[arg-type]
        raise UserDataError(f"{name}: {value!r} is not accepted; expected a lower-case fully qualified name"
                            " such as 'mgmt.cloudstack.internal' (at least two labels)")
    return value  # type: ignore[return-value]


def _check_version(name: str, value: object) -> str:
    _check_match(name, value, _VERSION, "'X.Y' or 'X.Y.Z', e.g. '4.22'")
    m = _VERSION.match(value)  # type: ignore[arg-type]
    assert m
    if (int(m.group(1)), int(m.group(2))) < FIRST_SUPPORTED_CLOUDSTACK:
        first = ".".join(map(str, FIRST_SUPPORTED_CLOUDSTACK))
        raise UserDataError(f"{name}: {value!r} is older than {first}, the first release that registers its"
                            " system VM template itself; accepted: {first} or newer")
    return value  # type: ignore[return-value]


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    _check_str(name, value)
    if value not in allowed:
        raise UserDataError(f"{name}: {value!r} is not accepted; one of {', '.join(allowed)}")
    return value  # type: ignore[return-value]


def _check_waits(waits: object) -> BootWaits:
    if not isinstance(waits, BootWaits):
        raise UserDataError(f"waits: expected a BootWaits, got {type(waits).__name__}")
    for f in fields(BootWaits):
        if f.name == "interval_seconds":
            _check_int(f"waits.{f.name}", getattr(waits, f.name), 1, 600)
        else:
            _check_int(f"waits.{f.name}", getattr(waits, f.name), 1, 86400)
    return waits


def _check_overlay(overlay: object, role: str) -> OverlayConfig:
    if not isinstance(overlay, OverlayConfig):
        raise UserDataError(f"overlay: expected an OverlayConfig, got {type(overlay).__name__}")
    o = overlay
    _check_choice("overlay.role", o.role, ("router", "member"))
    if o.role != role:
        raise UserDataError(f"overlay.role: {o.role!r} is not accepted here; this instance is an overlay {role}")
    _check_int("overlay.vxlan_id", o.vxlan_id, 1, rules.MAX_VXLAN_ID)
    _check_int("overlay.vxlan_port", o.vxlan_port, 1, 65535)
    _check_int("overlay.overlay_mtu", o.overlay_mtu, rules.MIN_OVERLAY_MTU, rules.MAX_OVERLAY_MTU)
    group = _ip_value("overlay.vxlan_group", o.vxlan_group, ipaddress.IPv4Address)
    if group is None or not group.is_multicast:
        raise UserDataError(f"overlay.vxlan_group: {o.vxlan_group!r} is not accepted; expected an IPv4"
                            " multicast address, e.g. from 239.255.0.0/16")
    iface = _ip_value("overlay.overlay_address", o.overlay_address, ipaddress.IPv4Interface)
    if iface is None or "/" not in o.overlay_address or not 8 <= iface.network.prefixlen <= 30 \
            or iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise UserDataError(f"overlay.overlay_address: {o.overlay_address!r} is not accepted; expected a host"
                            " address with its prefix (/8../30), e.g. '10.100.0.10/16'")
    vpc = _ip_value("overlay.vpc_cidr", o.vpc_cidr, ipaddress.IPv4Network)
    if vpc is None:
        raise UserDataError(f"overlay.vpc_cidr: {o.vpc_cidr!r} is not accepted; expected an IPv4 network"
                            " such as '10.0.0.0/16'")
    if vpc.overlaps(iface.network):
        raise UserDataError(f"overlay.overlay_address: {o.overlay_address!r} overlaps the VPC {o.vpc_cidr};"
                            " the overlay CIDR must lie outside the VPC")
    if role == "member":
        if o.overlay_gateway is None:
            raise UserDataError("overlay.overlay_gateway: None is not accepted; members need the router's"
                                " overlay address")
        gateway = _ip_value("overlay.overlay_gateway", o.overlay_gateway, ipaddress.IPv4Address)
        if gateway is None or gateway not in iface.network or gateway == iface.ip:
            raise UserDataError(f"overlay.overlay_gateway: {o.overlay_gateway!r} is not accepted; expected"
                                f" the router's address in {iface.network}, not this instance's own")
        if o.router_dnat:
            raise UserDataError(f"overlay.router_dnat: {o.router_dnat!r} is not accepted on a member; only"
                                " the router forwards ports")
    else:
        if o.overlay_gateway is not None and o.overlay_gateway != str(iface.ip):
            raise UserDataError(f"overlay.overlay_gateway: {o.overlay_gateway!r} is not accepted on the router;"
                                " leave it None (or its own address)")
    if not isinstance(o.router_dnat, tuple):
        raise UserDataError(f"overlay.router_dnat: expected a tuple of str, got {type(o.router_dnat).__name__}")
    for i, rule in enumerate(o.router_dnat):
        _check_str(f"overlay.router_dnat[{i}]", rule)
        m = _DNAT.match(rule)
        ok = bool(m) and 1 <= int(m.group(2)) <= 65535 and 1 <= int(m.group(4)) <= 65535  # type: ignore[union-attr]
        if ok:
            try:
                ok = ipaddress.IPv4Address(m.group(3)) in iface.network  # type: ignore[union-attr]
            except ValueError:
                ok = False
        if not ok:
            raise UserDataError(f"overlay.router_dnat[{i}]: {rule!r} is not accepted; expected"
                                f" 'tcp|udp:port:target_ip:target_port' with target_ip in {iface.network}")
    if o.underlay_dev is not None:
        _check_match("overlay.underlay_dev", o.underlay_dev, _DEV, "a network device name (max 15 characters)")
    _check_isolation(o, iface, vpc, role)
    return o


def _check_isolation(o: OverlayConfig, iface: ipaddress.IPv4Interface, vpc: ipaddress.IPv4Network,
                     role: str) -> None:
    if not isinstance(o.tenant_vpc_access, tuple):
        raise UserDataError(f"overlay.tenant_vpc_access: expected a tuple of str, got {type(o.tenant_vpc_access).__name__}")
    if iface.network.prefixlen > ipplan.MAX_OVERLAY_PREFIX:
        raise UserDataError(f"overlay.overlay_address: {o.overlay_address!r} is not accepted; the overlay must be"
                            f" a /{ipplan.MIN_OVERLAY_PREFIX}../{ipplan.MAX_OVERLAY_PREFIX} (the firewalls take"
                            " its address classes from the IP plan)")
    if role == "member":
        if o.storage_cidr is not None or o.tenant_vpc_access or o.tenant_refused:
            raise UserDataError("overlay.storage_cidr/tenant_vpc_access/tenant_refused: not accepted on a member; only the router"
                                " filters what the overlay reaches")
        for name in ("console_address", "console_range", "tenant_address", "tenant_dns"):
            if getattr(o, name) is not None:
                raise UserDataError(f"overlay.{name}: {getattr(o, name)!r} is not accepted on a member; only"
                                    " the router forwards the console")
        return
    if o.console_address is not None:
        console = _ip_value("overlay.console_address", o.console_address, ipaddress.IPv4Address)
        if console is None or console not in vpc:
            raise UserDataError(f"overlay.console_address: {o.console_address!r} is not accepted; expected the"
                                f" router's second private IPv4 address, inside the VPC {vpc}")
    if o.tenant_address is not None:
        tenant = _ip_value("overlay.tenant_address", o.tenant_address, ipaddress.IPv4Address)
        if tenant is None or tenant not in vpc or o.tenant_address == o.console_address:
            raise UserDataError(f"overlay.tenant_address: {o.tenant_address!r} is not accepted; expected the"
                                f" router's third private IPv4 address, inside the VPC {vpc} and not the console"
                                " address")
    if o.tenant_dns not in (None, "forward", "recurse") or (o.tenant_dns == "recurse" and o.tenant_address is None):
        raise UserDataError(f"overlay.tenant_dns: {o.tenant_dns!r} is not accepted; expected None, 'forward' or"
                            " 'recurse' (which needs tenant_address)")
    if o.console_range is not None:
        _check_console_range(o.console_range, iface.network, o.classes)
    if o.storage_cidr is None:
        raise UserDataError("overlay.storage_cidr: None is not accepted on the router; expected the dedicated"
                            " CloudStack subnet (where the EFS mount target is), e.g. '10.0.0.0/24'")
    storage = _ip_value("overlay.storage_cidr", o.storage_cidr, ipaddress.IPv4Network)
    if storage is None or not storage.subnet_of(vpc):
        raise UserDataError(f"overlay.storage_cidr: {o.storage_cidr!r} is not accepted; expected the dedicated"
                            f" subnet's IPv4 CIDR inside the VPC {vpc}")
    for i, text in enumerate(o.tenant_refused):
        net = _ip_value(f"overlay.tenant_refused[{i}]", text, ipaddress.IPv4Network)
        if net is None or net.prefixlen == 0:
            raise UserDataError(f"overlay.tenant_refused[{i}]: {text!r} is not accepted; expected an IPv4 CIDR"
                                " (host bits zero), not 0.0.0.0/0")
    for i, text in enumerate(o.tenant_vpc_access):
        net = _ip_value(f"overlay.tenant_vpc_access[{i}]", text, ipaddress.IPv4Network)
        if net is None or net.prefixlen == 0 or net.overlaps(rules.LINK_LOCAL) \
                or net.overlaps(iface.network):
            raise UserDataError(f"overlay.tenant_vpc_access[{i}]: {text!r} is not accepted; expected an IPv4 CIDR"
                                f" (host bits zero) outside 169.254.0.0/16 and the overlay {iface.network}")


def _check_console_range(text: str, overlay: ipaddress.IPv4Network, classes: ipplan.AddressClasses) -> None:
    _check_str("overlay.console_range", text)
    try:
        span: Optional[ipplan.AddressRange] = ipplan.AddressRange.parse(text)
    except ValueError:
        span = None
    system = classes.system
    if span is None or span.start not in overlay or span.end not in overlay \
            or span.overlaps(ipplan.AddressRange(classes.infrastructure[0], classes.infrastructure[-1])) \
            or span.overlaps(system):
        raise UserDataError(f"overlay.console_range: {text!r} is not accepted; expected 'first-last' IPv4 addresses"
                            f" inside the overlay {overlay}, outside the infrastructure block"
                            f" {classes.infrastructure} and the system range {system} (the system VMs' public"
                            " range, e.g. ipplan's system_public_range)")


def _check_common(boot: object, kind: type, role: str) -> None:
    if not isinstance(boot, kind):
        raise UserDataError(f"expected a {kind.__name__}, got {type(boot).__name__}")
    _check_match("aws_region", boot.aws_region, _REGION, "an AWS region such as 'eu-west-1'")  # type: ignore[attr-defined]
    _check_prefix("prefix", boot.prefix)  # type: ignore[attr-defined]
    _check_fqdn("fqdn", boot.fqdn)  # type: ignore[attr-defined]
    _check_overlay(boot.overlay, role)  # type: ignore[attr-defined]
    _check_waits(boot.waits)  # type: ignore[attr-defined]
    _check_bucket("boot_bucket", boot.boot_bucket)  # type: ignore[attr-defined]


def _check_bucket(name: str, value: object) -> str:
    _check_str(name, value)
    problems = aws_constraints.S3_BUCKET_NAME.problems(value)  # type: ignore[arg-type]
    if problems:
        raise UserDataError(f"{name}: {value!r} is not accepted; an S3 bucket name {'; '.join(problems)}"
                            f" [{aws_constraints.S3_BUCKET_NAME.source}]")
    return value  # type: ignore[return-value]


def _check_package_source(boot: object) -> None:
    _check_version("cloudstack_version", boot.cloudstack_version)  # type: ignore[attr-defined]
    _check_choice("os_codename", boot.os_codename, OS_CODENAMES)  # type: ignore[attr-defined]
    _check_match("repo_url", boot.repo_url, _URL, "an https:// URL")  # type: ignore[attr-defined]
    _check_match("key_url", boot.key_url, _URL, "an https:// URL")  # type: ignore[attr-defined]


# ------------------------------------------------------------- environment ----

def _common_env(boot, role: str) -> dict[str, str]:
    w: BootWaits = boot.waits
    return {
        "CSEC2_ENV_ROLE": role,
        "CSEC2_AWS_REGION": boot.aws_region,
        "CSEC2_PREFIX": boot.prefix,
        "CSEC2_HOSTNAME": boot.fqdn.split(".")[0],
        "CSEC2_FQDN": boot.fqdn,
        "CSEC2_OVERLAY_IP": boot.overlay.ip,
        "CSEC2_OVERLAY_CIDR": boot.overlay.cidr,
        "CSEC2_WAIT_PARAMETERS_SECONDS": str(w.parameters_seconds),
        "CSEC2_WAIT_SECRETS_SECONDS": str(w.secrets_seconds),
        "CSEC2_WAIT_DATABASE_SECONDS": str(w.database_seconds),
        "CSEC2_WAIT_API_SECONDS": str(w.api_seconds),
        "CSEC2_WAIT_SSH_KEY_SECONDS": str(w.ssh_key_seconds),
        "CSEC2_WAIT_NETWORK_SECONDS": str(w.network_seconds),
        "CSEC2_WAIT_INTERVAL_SECONDS": str(w.interval_seconds),
        **({"CSEC2_OVERLAY_GATEWAY": boot.overlay.overlay_gateway} if boot.overlay.role == "member" else {}),
        **(_class_env(boot.overlay.classes) if boot.overlay.role == "member" else {}),
    }


def _class_env(classes: ipplan.AddressClasses) -> dict[str, str]:
    """The address classes the members' firewalls admit (ranges as nftables writes them)."""
    return {
        "CSEC2_INFRA_CIDR": str(classes.infrastructure),
        "CSEC2_MANAGEMENT_RANGE": str(classes.management),
        "CSEC2_HOST_RANGE": str(classes.hosts),
        "CSEC2_SYSTEM_RANGE": str(classes.system),
    }


def _package_env(boot) -> dict[str, str]:
    return {
        "CSEC2_CLOUDSTACK_VERSION": boot.cloudstack_version,
        "CSEC2_OS_CODENAME": boot.os_codename,
        "CSEC2_CLOUDSTACK_REPO_URL": boot.repo_url.rstrip("/"),
        "CSEC2_CLOUDSTACK_KEY_URL": boot.key_url,
    }


def router_environment(boot: RouterBoot) -> dict[str, str]:
    """boot.env of the router (validated)."""
    _check_common(boot, RouterBoot, "router")
    return _common_env(boot, "router")


def management_environment(boot: ManagementBoot) -> dict[str, str]:
    """boot.env of the management server (validated)."""
    _check_common(boot, ManagementBoot, "member")
    _check_package_source(boot)
    _check_match("zone_name", boot.zone_name, _ZONE, rules.ZONE_NAME_ACCEPTED)
    _check_match("efs_mount_point", boot.efs_mount_point, _PATH, "an absolute path such as '/mnt/cloudstack-efs'")
    if ".." in boot.efs_mount_point.split("/") or boot.efs_mount_point.rstrip("/") in ("", "/mnt"):
        raise UserDataError(f"efs_mount_point: {boot.efs_mount_point!r} is not accepted; use a dedicated"
                            " directory such as '/mnt/cloudstack-efs'")
    if not isinstance(boot.secrets, ManagementSecrets):
        raise UserDataError(f"secrets: expected a ManagementSecrets (secret names/ARNs), got {type(boot.secrets).__name__}")
    if boot.console_address != "" and _ip_value("console_address", boot.console_address,
                                                ipaddress.IPv4Address) is None:
        raise UserDataError(f"console_address: {boot.console_address!r} is not accepted; expected the console"
                            " Elastic IP as an IPv4 address such as '203.0.113.7', or '' for none")
    env = {**_common_env(boot, "management"), **_package_env(boot),
           "CSEC2_ZONE_NAME": boot.zone_name, "CSEC2_EFS_MOUNT_POINT": boot.efs_mount_point,
           "CSEC2_CONSOLE_ADDRESS": boot.console_address}
    for f in fields(ManagementSecrets):
        value = getattr(boot.secrets, f.name)
        if not isinstance(value, str):
            _check_str(f"secrets.{f.name}", value)
        if not _SECRET_ID.match(value) or any(c in value for c in "\"$`\\\n'"):
            raise UserDataError(f"secrets.{f.name}: {value!r} is not accepted; expected a Secrets Manager secret"
                                " ARN or a name starting with 'cloudstack-ec2/' (never a secret value)")
        env[f"CSEC2_SECRET_{f.name.upper()}"] = value
    return env


def kvm_host_environment(boot: KvmHostBoot) -> dict[str, str]:
    """boot.env of a KVM host (validated)."""
    _check_common(boot, KvmHostBoot, "member")
    _check_package_source(boot)
    _check_match("host_user", boot.host_user, _USER, "a Linux user name such as 'root' or 'cloudstack'")
    return {**_common_env(boot, "kvm-host"), **_package_env(boot), "CSEC2_HOST_USER": boot.host_user}


def overlay_environment(overlay: OverlayConfig) -> dict[str, str]:
    """overlay.env: the variables of userdata/overlay-network.sh (validate first via the Boot)."""
    env = {
        "OVERLAY_ROLE": overlay.role,
        "VXLAN_ID": str(overlay.vxlan_id),
        "VXLAN_GROUP": overlay.vxlan_group,
        "VXLAN_PORT": str(overlay.vxlan_port),
        "OVERLAY_ADDRESS": overlay.overlay_address,
        "OVERLAY_MTU": str(overlay.overlay_mtu),
        "VPC_CIDR": overlay.vpc_cidr,
    }
    if overlay.overlay_gateway is not None:
        env["OVERLAY_GATEWAY"] = overlay.overlay_gateway
    if overlay.underlay_dev is not None:
        env["UNDERLAY_DEV"] = overlay.underlay_dev
    if overlay.router_dnat:
        env["ROUTER_DNAT"] = " ".join(overlay.router_dnat)
    if overlay.role == "router":
        classes = overlay.classes
        env["INFRA_CIDR"] = str(classes.infrastructure)
        env["SYSTEM_RANGE"] = str(classes.system)
        if overlay.storage_cidr is not None:
            env["STORAGE_CIDR"] = overlay.storage_cidr
        if overlay.tenant_vpc_access:
            env["TENANT_VPC_ACCESS"] = " ".join(overlay.tenant_vpc_access)
        if overlay.console_address is not None:
            env["CONSOLE_ADDRESS"] = overlay.console_address
        if overlay.console_range is not None:
            env["CONSOLE_RANGE"] = overlay.console_range
        tenants = {"TENANT_ADDRESS": overlay.tenant_address, "TENANT_DNS": overlay.tenant_dns,
                   "TENANT_REFUSED": " ".join(overlay.tenant_refused) or None}
        env.update((name, value) for name, value in tenants.items() if value is not None)
    return env


def _env_file(title: str, env: Mapping[str, str]) -> str:
    # KEY="value" lines: read the same way by bash (`source`) and by systemd
    # (EnvironmentFile=); values were checked to hold no quote, '$', '`' or '\'.
    lines = [f"# {title}", "# Written by the cloudstack-ec2 user data. Non-secret settings only."]
    for key, value in env.items():
        if any(c in value for c in "\"$`\\\n\r"):
            raise UserDataError(f"{key}: {value!r} cannot be written to an environment file")
        lines.append(f'{key}="{value}"')
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- payload ----

def load_boot_files() -> dict[str, str]:
    """The package's userdata/ files the user data embeds (name -> text)."""
    names = ["common.sh", "overlay-network.sh", "overlay-router.sh", STAGE2_LAUNCHER, *ROLE_SCRIPTS.values(),
             *sorted({u for units in ROLE_UNITS.values() for u in units})]
    root = resources.files("userdata")
    files = {}
    for name in names:
        item = root.joinpath(name)
        if not item.is_file():
            raise UserDataError(f"userdata/{name} is missing from the package")
        files[name] = item.read_text(encoding="utf-8")
    return files


_DELIMITER = "CSEC2_END_OF_FILE"


def strip_comments(text: str, source: str) -> str:
    """Drops full-line comments (keeps a first-line shebang): the scripts are
    documented in the repository; on the instance every byte counts against
    EC2's 16 KiB. Only lines whose first non-blank character is '#' go (but
    shellcheck directives), which
    in these files are comments, shellcheck directives or comments of embedded
    config files; tests run the stripped scripts."""
    lines = text.splitlines()
    kept = []
    if lines and lines[0].startswith("#!"):
        kept.append(lines[0])
        lines = lines[1:]
    kept.append(f"# {source} of cloudstack-ec2 (comments stripped; see the repository)")
    # shellcheck directives stay, so the embedded copies pass shellcheck as well.
    kept.extend(line for line in lines
                if not line.lstrip().startswith("#") or line.lstrip().startswith("# shellcheck "))
    return "\n".join(kept) + "\n"


#: Scripts whose indentation carries no meaning except inside `python3 -c '`
#: blocks (heredocs: SQL, nft); their embedded copies lose leading blanks. Scripts
#: of other owners (kvm-host.sh) keep theirs: one whitespace-sensitive heredoc
#: would break silently.
DEDENTED_SCRIPTS = ("common.sh", "management-server.sh", "overlay-network.sh", "overlay-router.sh", "router.sh")


def dedent_shell(text: str) -> str:
    """Drops leading blanks of every line but those inside a `python3 -c '` block
    (from the line ending in `python3 -c '` to the line starting with `'`), where
    indentation is syntax. Saves about 3 % of the compressed user data."""
    out, in_python = [], False
    for line in text.splitlines():
        if in_python:
            in_python = not line.startswith("'")
            out.append(line)
            continue
        out.append(line.lstrip(" \t"))
        in_python = line.rstrip().endswith("python3 -c '")
    return "\n".join(out) + "\n"


def embedded_script(name: str, text: str) -> str:
    """The copy of userdata/`name` the user data writes: comments stripped, and
    dedented for DEDENTED_SCRIPTS."""
    text = strip_comments(text, f"userdata/{name}")
    return dedent_shell(text) if name in DEDENTED_SCRIPTS else text


def _heredoc(target: str, text: str, mode: str) -> str:
    if not text.endswith("\n"):
        text += "\n"
    if _DELIMITER in text.splitlines():
        raise UserDataError(f"{target}: contains the line {_DELIMITER!r}, which ends the embedded file")
    return f"cat >\"$root{target}\" <<'{_DELIMITER}'\n{text}{_DELIMITER}\nchmod {mode} \"$root{target}\"\n"


def _payload(role: str, env: Mapping[str, str], overlay: OverlayConfig, files: Mapping[str, str]) -> str:
    parts = [
        "#!/bin/bash\n",
        f"# cloudstack-ec2 user data, role {role}: rendered by components/boot/userdata.py from\n",
        "# non-secret settings; secrets are read at run time from Secrets Manager.\n",
        "# Stage 2 (the role script) comes from S3: see docs/boot.md.\n",
        "# Follow the boot: /var/log/cloud-init-output.log, /var/log/cloudstack-ec2-boot.log\n",
        "set -euo pipefail\n",
        "umask 022\n",
        'root="${CSEC2_ROOT:-}"\n',
        f'mkdir -p "$root{LIB_DIR}" "$root{ETC_DIR}" "$root{UNIT_DIR}" "$root{BOOT_LINK.rsplit("/", 1)[0]}"\n',
    ]
    # overlay-router.sh: the router's part of overlay-network.sh (its overlay unit needs
    # it), kept out of the members' user data (EC2's 16 KiB).
    for name in ("common.sh", STAGE2_LAUNCHER, "overlay-network.sh",
                 *(("overlay-router.sh",) if role == "router" else ())):
        parts.append(_heredoc(f"{LIB_DIR}/{name}", embedded_script(name, files[name]),
                              "0755" if name != "common.sh" else "0644"))
    for unit in ROLE_UNITS[role]:
        parts.append(_heredoc(f"{UNIT_DIR}/{unit}", strip_comments(files[unit], f"userdata/{unit}"), "0644"))
    parts.append(_heredoc(f"{ETC_DIR}/boot.env", _env_file(f"boot settings, role {role}", env), "0644"))
    parts.append(_heredoc(f"{ETC_DIR}/overlay.env",
                          _env_file("overlay-network.sh settings", overlay_environment(overlay)), "0644"))
    parts.append(f'ln -sfn "{LIB_DIR}/{STAGE2_LAUNCHER}" "$root{BOOT_LINK}"\n')
    parts.append(f'exec "$root{LIB_DIR}/{STAGE2_LAUNCHER}"\n')
    return "".join(parts)


# ----------------------------------------------------------------- stage 2 ----

@dataclass(frozen=True)
class BootObject:
    """One role script as the boot-script bucket holds it.

    `content` is the repository file byte for byte (comments kept: S3 has no
    16 KiB limit, and the copy on the instance stays readable); `sha256` is the
    hex digest of its UTF-8 bytes, which the launcher checks; `key` is
    `boot/<role>-<sha256>.sh`."""
    role: str          # "router" | "management" | "kvm-host"
    script: str        # file name on the instance, e.g. "management-server.sh"
    key: str
    sha256: str
    content: str


def boot_object(role: str, files: Optional[Mapping[str, str]] = None) -> BootObject:
    """The S3 object of `role`'s script (from `files`, default the package's)."""
    if role not in ROLE_SCRIPTS:
        raise UserDataError(f"role: {role!r} is not accepted; one of {', '.join(ROLE_SCRIPTS)}")
    script = ROLE_SCRIPTS[role]
    content = (files or load_boot_files())[script]
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()
    key = f"{STAGE2_KEY_PREFIX}{role}-{digest}.sh"
    problems = aws_constraints.S3_OBJECT_KEY.problems(key)
    if problems:  # a role name the key rules refuse: caught here, not at upload
        raise UserDataError(f"boot object key {key!r}: {'; '.join(problems)} [{aws_constraints.S3_OBJECT_KEY.source}]")
    return BootObject(role=role, script=script, key=key, sha256=digest, content=content)


def boot_objects(files: Optional[Mapping[str, str]] = None) -> dict[str, BootObject]:
    """role -> its BootObject, for every role."""
    files = files or load_boot_files()
    return {role: boot_object(role, files) for role in ROLE_SCRIPTS}


def stage2_environment(role: str, bucket: str, files: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The CSEC2_STAGE2_* settings of boot.env: where stage2.sh fetches the role script and its sha256."""
    obj = boot_object(role, files)
    return {
        "CSEC2_STAGE2_BUCKET": _check_bucket("boot_bucket", bucket),
        "CSEC2_STAGE2_KEY": obj.key,
        "CSEC2_STAGE2_SHA256": obj.sha256,
        "CSEC2_STAGE2_SCRIPT": obj.script,
    }


def s3_object_arn(partition: str, bucket: str, key: str) -> str:
    """ARN of object `key` in `bucket`: S3 ARNs carry neither region nor account
    (Service Authorization Reference, Amazon S3 resource types: arn:${Partition}:s3:::${BucketName}/${ObjectName})."""
    return f"arn:{partition}:s3:::{bucket}/{key}"


def s3_bucket_arn(partition: str, bucket: str) -> str:
    """ARN of `bucket` (arn:${Partition}:s3:::${BucketName})."""
    return f"arn:{partition}:s3:::{bucket}"


def tls_only_bucket_policy(bucket_arn: str) -> dict:
    """A bucket policy refusing every request not made over TLS (S3 User Guide,
    security best practices: deny when aws:SecureTransport is false)."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }


def _encode(payload: str, role: str) -> str:
    # mtime=0: the same inputs give the same bytes, so Pulumi sees no change.
    compressed = gzip.compress(payload.encode("utf-8"), compresslevel=9, mtime=0)
    if len(compressed) > USER_DATA_LIMIT_BYTES:
        raise UserDataError(f"user data of role {role} is {len(compressed)} bytes compressed; EC2 accepts at most"
                            f" {USER_DATA_LIMIT_BYTES}")
    return base64.b64encode(compressed).decode("ascii")


def decode_user_data(user_data_base64: str) -> str:
    """The bash script inside rendered user data (for tests and debugging)."""
    return gzip.decompress(base64.b64decode(user_data_base64)).decode("utf-8")


def render_router_user_data(boot: RouterBoot, *, files: Optional[Mapping[str, str]] = None) -> str:
    """Base64 of the gzip'd boot script of the overlay router."""
    files = files or load_boot_files()
    env = {**router_environment(boot), **stage2_environment("router", boot.boot_bucket, files)}
    return _encode(_payload("router", env, boot.overlay, files), "router")


def render_management_user_data(boot: ManagementBoot, *, files: Optional[Mapping[str, str]] = None) -> str:
    """Base64 of the gzip'd boot script of the CloudStack management server."""
    files = files or load_boot_files()
    env = {**management_environment(boot), **stage2_environment("management", boot.boot_bucket, files)}
    return _encode(_payload("management", env, boot.overlay, files), "management")


def render_kvm_host_user_data(boot: KvmHostBoot, *, files: Optional[Mapping[str, str]] = None) -> str:
    """Base64 of the gzip'd boot script of a KVM host."""
    files = files or load_boot_files()
    env = {**kvm_host_environment(boot), **stage2_environment("kvm-host", boot.boot_bucket, files)}
    return _encode(_payload("kvm-host", env, boot.overlay, files), "kvm-host")


__all__ = [
    "USER_DATA_LIMIT_BYTES", "UserDataError", "OverlayConfig", "BootWaits", "ManagementSecrets",
    "RouterBoot", "ManagementBoot", "KvmHostBoot",
    "router_environment", "management_environment", "kvm_host_environment", "overlay_environment",
    "strip_comments", "BootObject", "boot_object", "boot_objects", "stage2_environment",
    "s3_object_arn", "s3_bucket_arn", "tls_only_bucket_policy",
    "load_boot_files", "decode_user_data",
    "render_router_user_data", "render_management_user_data", "render_kvm_host_user_data",
]
