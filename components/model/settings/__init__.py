"""Stack settings: one frozen, typed description of the deployment, validated in one place.

Pure package (no Pulumi import). `parse_settings` turns the stack's raw config values
(strings, as Pulumi hands them over, or already-parsed YAML values) into `Settings`,
collecting EVERY problem before it raises, so a user fixes a stack file in one round.

Each tier's keys sit beside their own rules: `network`, `controlplane` (router, management
server), `compute` (KVM hosts), `cloudstack` (release, zone, registration), `data`
(database, storage), `operations` (logs, alarms, renewInstances); `instancetypes` holds the checks on what
AWS says of an instance type (Nitro, metal, architecture), shared by the run-time lookup
and the offline plan; `provider`
checks the AWS provider's own keys (`aws:region`, a misspelt `aws:` key). This module holds
what spans tiers: `Settings`, the parser and the cross-tier rules.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping, Optional, Sequence

from components.model import ipplan
from components.model.ldap import LdapDirectory
from components.model.suggest import did_you_mean
from components.model.settings import cloudstack, compute, controlplane, data, directory, frontend, network, operations
from components.model.settings.base import HIDDEN, NAMESPACE, Key, Problem, SettingsError
from components.model.settings.provider import AWS_NAMESPACE, AWS_SECRET_KEYS
from components.model.settings.cloudstack import (  # noqa: F401  (the package's public names)
    MYSQL_84_FIRST_RELEASE,
    SUPPORTED_CLOUDSTACK_RELEASES,
    _NAME,
    _VERSION,
    parse_version,
    supports_mysql_84,
)
from components.model.settings.compute import MAX_HOSTS_PER_CLUSTER, UBUNTU_RELEASES  # noqa: F401
from components.model.settings.data import (  # noqa: F401
    DB_ENGINE_VERSIONS,
    EFS_THROUGHPUT_MODES,
    efs_provisioned_throughput,
)
from components.model.settings.instancetypes import (  # noqa: F401
    INSTANCE_TYPE as _INSTANCE_TYPE,
    KVM_HOST_TYPES_ACCEPTED,
    NESTED_VIRTUALIZATION_FEATURE,
    UNKNOWN_OFFLINE_HYPERVISOR,
    InstanceFacts,
    InstanceLookup,
    check_instance_type,
    known_not_nitro,
    unknown_offline_warning,
)
from components.model.settings.network import (  # noqa: F401
    ALL_IPV4,
    LINK_LOCAL,
    LOCAL_SCOPE_MULTICAST,
    MAX_OVERLAY_MTU,
    MAX_VXLAN_ID,
    MIN_OVERLAY_MTU,
    RESERVED_FORWARD_PORTS,
    TGW_MAX_MTU,
    VXLAN_OVERHEAD,
    VmForward,
    db_subnets_in_vpc,
    existing_vpc_ids_together,
    guest_cidr_apart,
    overlay_outside_vpc,
    parse_vm_forwards,
    public_admin_access_consented,
    subnet_inside_vpc,
    tenant_access_keeps_isolation,
    vm_forwards_valid,
)

#: Every key, tier by tier, in the order the README's table and the problems list them.
KEYS: tuple[Key, ...] = (network.KEYS + controlplane.KEYS + frontend.KEYS + compute.KEYS + cloudstack.KEYS
                         + data.KEYS + directory.KEYS + operations.KEYS)
KEYS_BY_NAME = {k.name: k for k in KEYS}


def holds_secret(full_key: str) -> bool:
    """Whether `namespace:key`'s value holds a secret (a key declared `secret`, a field of one such
    as `ldap.bindPassword`, or one of the AWS provider's credentials), so that no message may
    show any of it."""
    namespace, _, name = full_key.partition(":")
    name = re.split(r"[.\[]", name)[0]
    if namespace == NAMESPACE:
        return name in KEYS_BY_NAME and KEYS_BY_NAME[name].secret
    return namespace == AWS_NAMESPACE and name in AWS_SECRET_KEYS


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
    #: routerCount: 1, or 2 (an active/standby pair).
    router_count: int = 1
    #: ldap: the company directory users sign in with (None: CloudStack's own accounts only)
    ldap: Optional[LdapDirectory] = None
    #: The UI/API front end (components/model/settings/frontend.py).
    ui_load_balancer: bool = False
    ui_certificate_arn: str = ""
    ui_domain_name: str = ""
    ui_hosted_zone_id: str = ""
    #: The load balancer's subnets: given or carved (new VPC; () while it is off), or named (vpcId).
    ui_subnet_cidrs: tuple[ipaddress.IPv4Network, ...] = ()
    ui_subnet_ids: tuple[str, ...] = ()
    #: managementServerCount: CloudStack management servers sharing the database.
    management_server_count: int = 1
    #: logRetentionDays, alarmEmail (components/model/settings/operations.py).
    log_retention_days: int = 30
    alarm_email: str = ""
    #: renewInstances: the instances relaunched with their current boot (naming.instance_names).
    renew_instances: tuple[str, ...] = ()

    @property
    def uses_existing_vpc(self) -> bool:
        return bool(self.vpc_id)

    @property
    def ui_behind_load_balancer(self) -> bool:
        """The UI/API is served by the load balancer (frontend.load_balancer_on), not the router."""
        return frontend.load_balancer_on({
            "uiLoadBalancer": self.ui_load_balancer, "uiCertificateArn": self.ui_certificate_arn,
            "uiDomainName": self.ui_domain_name,
            "managementServerCount": getattr(self, "management_server_count", 1)})

    @property
    def ui_https(self) -> bool:
        """The load balancer serves HTTPS (frontend.https_on)."""
        return frontend.https_on({"uiCertificateArn": self.ui_certificate_arn, "uiDomainName": self.ui_domain_name,
                                  "uiHostedZoneId": self.ui_hosted_zone_id})

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
            management_count=self.management_server_count,
            guest_cidr=str(self.guest_cidr),
            guest_vlans=self.guest_vlan_range,
            router_count=self.router_count,
        )


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

    def __init__(self, raw: Mapping[str, Any], lookup_instance: Optional["InstanceLookup"] = None,
                 secret_keys: Collection[str] = ()):
        self.raw = raw
        #: keys the stack holds as Pulumi secrets (a secret's plain text must come from one)
        self.secret_keys = frozenset(secret_keys)
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
        converter = {"str": self._str, "int": self._int, "bool": self._bool, "list": self._list,
                     "object": self._object}[key.kind]
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
                self.problem(name, raw, f"expected a list, e.g. {KEYS_BY_NAME[name].example} "
                                        f"(pulumi config set --path '{name}[0]' ...)")
                return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(name, raw, "expected a list of strings")
            return default
        return [v.strip() for v in value]


    def _object(self, name: str, raw: Any, default: Any) -> Any:
        """An object: as YAML gave it, or its JSON text (how Pulumi passes a structured value).
        A secret key's unreadable value is shown as "(hidden)": it may hold the secret."""
        shown = HIDDEN if KEYS_BY_NAME[name].secret else raw
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                self.problem(name, shown, f"expected an object (pulumi config set --path '{name}.<field>' ...)")
                return default
        if not isinstance(raw, dict):
            self.problem(name, shown, "expected an object")
            return default
        return raw


# --------------------------------------------------------------------------- cross-tier rules
# Each reads the per-key results (`c.values`, None where unusable) and reports on one rule
# that involves keys of several tiers.


def instance_types_known(c: _Collector) -> None:
    """What AWS says of the instance types (Nitro, KVM-capable hosts, x86_64), when asked."""
    if c.lookup_instance is None:
        return
    for key, needs_metal in (("routerInstanceType", False), ("managementInstanceType", False),
                             ("hostInstanceType", True)):
        name = c.values[key]
        if _INSTANCE_TYPE.match(name) and not c.has_problem(key):
            facts = c.lookup_instance(name)
            if facts is not None and facts.unknown_offline and not known_not_nitro(name):
                c.warnings.append(unknown_offline_warning(key, name))
            c.problems.extend(check_instance_type(key, name, needs_metal, facts))
            if key == "routerInstanceType":
                c.problems.extend(controlplane.router_interface_problems(name, facts))


def hosts_fit(c: _Collector) -> None:
    """The hosts fit the overlay's address plan, one Transit Gateway multicast group and
    the CloudStack subnet."""
    host_count, overlay, subnet = c.values["hostCount"], c.values["overlayCidr"], c.values["cloudstackSubnetCidr"]
    servers = c.values["managementServerCount"]
    if host_count < 1 or not 1 <= servers <= controlplane.MAX_MANAGEMENT_SERVERS:
        return
    if overlay is not None:
        capacity = ipplan.host_capacity(overlay)
        if host_count > capacity:
            c.problem("hostCount", host_count,
                      f"overlayCidr {overlay} has room for {capacity} hosts; widen overlayCidr or lower hostCount")
    routers = c.values["routerCount"] if 1 <= c.values["routerCount"] <= ipplan.MAX_ROUTERS else 1
    members = routers + servers + host_count
    if members > ipplan.MAX_MULTICAST_MEMBERS:
        c.problem("hostCount", host_count,
                  f"{routers} router(s) + {servers} management server(s) + {host_count} hosts = {members} members, "
                  f"but a Transit Gateway multicast group holds at most {ipplan.MAX_MULTICAST_MEMBERS}: at most "
                  f"{ipplan.MAX_MULTICAST_MEMBERS - routers - servers} hosts per overlay")
    if subnet is not None and subnet.prefixlen <= 28:
        room = ipplan.subnet_host_capacity(subnet, servers, router_count=routers)
        if host_count > room:
            usable = subnet.num_addresses - ipplan.SUBNET_RESERVED_ADDRESSES
            c.problem("cloudstackSubnetCidr", str(subnet),
                      f"has {usable} usable addresses (EC2 reserves {ipplan.SUBNET_RESERVED_ADDRESSES}), but the "
                      f"{routers} router(s), {servers} management server(s), hostCount {host_count} hosts, the "
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


#: The rules that involve several keys, run in this order after every key's own rule.
CROSS_KEY_RULES: tuple[Callable[[_Collector], None], ...] = (
    *network.CROSS_KEY_RULES,
    instance_types_known,
    hosts_fit,
    mysql_84_supported,
    mysql_80_extended_support,
    *frontend.CROSS_KEY_RULES,
    *data.CROSS_KEY_RULES,
    *directory.CROSS_KEY_RULES,
    *operations.CROSS_KEY_RULES,
)



def unknown_key_hint(name: str, known) -> str:
    """The nearest known key to a misspelt one, else where the accepted keys are listed.

    `ldap.provider` is what `pulumi config set ldap.provider x` stores without `--path`: a key
    of that name, not a field of `ldap` (Pulumi docs, Configuration, "Structured configuration":
    a field is set with `--path`)."""
    head = re.split(r"[.\[]", name, maxsplit=1)[0]
    if head != name and head in known:
        return (f"`{head}` is one key holding an object: set a field with "
                f"`pulumi config set --path '{name}' <value>`, or `{head}` whole as JSON")
    return did_you_mean(name, known) or "`cloudstack-ec2 keys` lists the accepted keys"


def _field_name(key: str) -> str:
    """vpcCidr -> vpc_cidr: a Settings field is named after its key."""
    return re.sub(r"([A-Z])", r"_\1", key).lower()


def parse_settings(
    raw: Mapping[str, Any],
    lookup_instance: Optional[InstanceLookup] = None,
    known_keys_only: bool = True,
    secret_keys: Collection[str] = (),
) -> Settings:
    """Validate the raw config of a stack. Raises SettingsError listing every problem.

    Unknown keys first, then each key of KEYS by its own rule (`Key.rule`), then
    CROSS_KEY_RULES. `lookup_instance` answers what AWS knows of an instance type (None:
    unknown type); without it the instance-type facts are not checked. `secret_keys`: the
    keys the stack holds as Pulumi secrets (`ldap`'s bind password must be one).
    """
    c = _Collector(raw, lookup_instance, secret_keys)

    if known_keys_only:
        for name in sorted(set(raw) - set(KEYS_BY_NAME)):
            shown = HIDDEN if holds_secret(f"{NAMESPACE}:{name}") else raw[name]
            c.problem(name, shown, f"unknown key ({unknown_key_hint(name, KEYS_BY_NAME)})")

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
