"""The registration as an ordered list of resources (pure, no Pulumi).

Both the Pulumi component and the tests' small engine walk this plan, so the
order and the dependencies tested against the emulator are the ones deployed.

Order (CloudStack's installation guide, chapter 6, changed where the notes in parentheses
say why): zone → physical
network → traffic types (KVM label cloudbr0) → providers → pod → public range → the system
VMs' public range (forsystemvms) → global settings (`host` before any addHost) → the management
servers (a server that left is drained) → clusters →
each cluster's hosts (one resource per cluster) → primary storage (needs an Up host) → image store (after the KVM cluster: the system VM template
is registered then, for existing clusters' hypervisors) → zone enabled → console forwards
(the console proxy's public IP for the router, with a console-forwards parameter).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .spec import (PROVIDER_ELEMENTS, TRAFFIC_TYPES, RegistrationSpec, ldap_link_resource_name,
                   ldap_server_resource_name)

#: Connection properties every resource carries. Not secrets: the keys are read
#: at run time from the secret named here and never stored.
CONNECTION_KEYS = ("endpoint", "secret_id", "region", "timeouts", "aws")


@dataclass(frozen=True)
class Ref:
    """An output (default: the CloudStack id) of another planned resource."""

    resource: str
    key: str = "id"


@dataclass(frozen=True)
class Deferred:
    """A value known only at deploy time (a Pulumi input), with fixed text around it."""

    name: str           # endpoint | secret_id | region | efs_dns | aws | host_ready_prefix | instance-<i>
    #                     | console_forwards_parameter | console_address | ldap_bind_secret | ldap_bind_version
    #                     | ldap_truststore_secret
    prefix: str = ""
    suffix: str = ""


@dataclass(frozen=True)
class PlannedResource:
    name: str
    kind: str
    props: dict[str, Any]
    depends_on: tuple[str, ...] = ()
    #: on a cluster's hosts: the hosts' EC2 instances are extra dependencies, so a scale-in
    #: deregisters a host (an update of this resource) before Pulumi deletes its instance
    #: (deletes of resources that left the program run after every create and update).
    host_indexes: tuple[int, ...] = ()

    def refs(self) -> set[str]:
        return {v.resource for v in self.props.values() if isinstance(v, Ref)} | set(self.depends_on)


def setting_resource_name(name: str) -> str:
    return "setting-" + name.replace(".", "-")


class _Planner:
    """The planned resources, in order; each gets the connection properties."""

    def __init__(self, spec: RegistrationSpec):
        self.spec = spec
        self.out: list[PlannedResource] = []
        self.conn: dict[str, Any] = {
            "endpoint": Deferred("endpoint"),
            "secret_id": Deferred("secret_id"),
            "region": Deferred("region"),
            "timeouts": spec.timeouts.as_dict(),
            # the stack's AWS identity (profile, assumeRoles without secrets) for Secrets Manager / SSM
            "aws": Deferred("aws"),
        }

    def add(self, name: str, kind: str, props: dict[str, Any], depends_on: tuple[str, ...] = (),
            host_indexes: tuple[int, ...] = ()) -> str:
        """Plan resource `name`; returns the name, for the resources that depend on it."""
        self.out.append(PlannedResource(name, kind, {**props, **self.conn}, depends_on, host_indexes))
        return name


def plan_registration(spec: RegistrationSpec) -> list[PlannedResource]:
    """The registration's resources in the order of the module docstring, each depending
    on the ones CloudStack needs before it."""
    p = _Planner(spec)
    providers = _plan_physical_network(p)
    system_ranges = _plan_pod_and_ranges(p, providers)
    settings = tuple(p.add(setting_resource_name(s.name), "global_setting", {"name": s.name, "value": s.value})
                     for s in spec.global_settings)
    if spec.management_servers:
        # after `host` and the algorithm: the agents have the new list before a server goes
        p.add("management-servers", "management_servers",
              {"zoneid": Ref("zone"), "servers": list(spec.management_servers)}, settings)
    _plan_clusters(p, settings)
    _plan_storage(p)
    p.add("zone-enable", "zone_enablement", {"zoneid": Ref("zone"), "allocationstate": "Enabled"},
          ("image-store", "primary-storage", "public-range", *system_ranges, *settings))
    consoles = _plan_console_forwards(p, system_ranges)
    _plan_ldap(p)
    # Last: depends on everything (and, in the component, on every AWS resource), so that
    # `pulumi destroy` deletes it first; its deletion refuses while CloudStack has VMs.
    p.add("workload-guard", "workload_guard", {"zoneid": Ref("zone"),
                                               "allow_destroy_with_vms": spec.allow_destroy_with_vms},
          ("zone-enable", *(f"hosts-{c.index}" for c in spec.clusters), *consoles))
    return p.out


def _plan_physical_network(p: _Planner) -> tuple[str, ...]:
    """Zone, physical network, its traffic types and its providers; returns the providers' names."""
    z, pn = p.spec.zone, p.spec.physical_network
    p.add("zone", "zone", {
        "name": z.name, "networktype": z.network_type, "dns1": z.dns1,
        "internaldns1": z.internal_dns1, "guestcidraddress": z.guest_cidr,
    })
    p.add("physical-network", "physical_network", {
        "zoneid": Ref("zone"), "name": pn.name, "isolationmethods": pn.isolation_method,
        "vlan": pn.vlan_range, "broadcastdomainrange": "ZONE", "state": "Enabled",
    })
    traffic = tuple(p.add(f"traffic-{t.lower()}", "traffic_type", {
        "physicalnetworkid": Ref("physical-network"), "traffictype": t, "kvmnetworklabel": pn.traffic_label,
    }) for t in TRAFFIC_TYPES)
    return tuple(p.add(f"provider-{name.lower()}", "network_service_provider", {
        "physicalnetworkid": Ref("physical-network"), "name": name, "element": PROVIDER_ELEMENTS[name],
        "state": "Enabled",
    }, traffic) for name in pn.providers)


def _plan_pod_and_ranges(p: _Planner, providers: tuple[str, ...]) -> tuple[str, ...]:
    """The pod, the public range and the system VMs' range; returns the latter's name (or ())."""
    pod, pub, sys_range = p.spec.pod, p.spec.public_range, p.spec.system_public_range
    p.add("pod", "pod", {
        "zoneid": Ref("zone"), "name": pod.name, "gateway": pod.gateway, "netmask": pod.netmask,
        "startip": pod.start_ip, "endip": pod.end_ip,
    }, providers)
    p.add("public-range", "public_ip_range", {
        "zoneid": Ref("zone"), "physicalnetworkid": Ref("physical-network"), "gateway": pub.gateway,
        "netmask": pub.netmask, "startip": pub.start_ip, "endip": pub.end_ip, "vlan": pub.vlan,
        "forvirtualnetwork": True,
    }, ("pod", "traffic-public"))
    if sys_range is None:
        return ()
    # the console proxy's (and secondary storage VM's) public IP comes from here: before the
    # zone is enabled, which launches them
    return (p.add("system-public-range", "public_ip_range", {
        "zoneid": Ref("zone"), "physicalnetworkid": Ref("physical-network"), "gateway": sys_range.gateway,
        "netmask": sys_range.netmask, "startip": sys_range.start_ip, "endip": sys_range.end_ip,
        "vlan": sys_range.vlan,
        "forvirtualnetwork": True, "forsystemvms": True,
    }, ("pod", "traffic-public", "public-range")),)


def _plan_clusters(p: _Planner, settings: tuple[str, ...]) -> None:
    """Every cluster, then each cluster's hosts (after the global settings: `host` first)."""
    clusters = sorted(p.spec.clusters, key=lambda c: c.index)
    for c in clusters:
        p.add(f"cluster-{c.index}", "cluster", {
            "zoneid": Ref("zone"), "podid": Ref("pod"), "clustername": c.name,
            "hypervisor": "KVM", "clustertype": "CloudManaged",
        }, ("public-range",))
    for c in clusters:
        members = sorted((h for h in p.spec.hosts if h.cluster_index == c.index), key=lambda h: h.index)
        p.add(f"hosts-{c.index}", "cluster_hosts", {
            "zoneid": Ref("zone"), "podid": Ref("pod"), "clusterid": Ref(f"cluster-{c.index}"),
            "clustername": c.name, "hypervisor": "KVM", "username": members[0].username,
            # <prefix>/host-ready: each host's boot script writes <this>/<overlay ip> when it is
            # ready for addHost ("" : do not wait for it)
            "ready_parameter_prefix": Deferred("host_ready_prefix"),
            "hosts": [{"index": h.index, "ipaddress": h.overlay_ip, "instance": Deferred(f"instance-{h.index}")}
                      for h in members],
            # outputs, declared so that the resource has them as attributes
            "host_ids": None, "states": None, "service": None,
        }, settings, host_indexes=tuple(h.index for h in members))


def _plan_storage(p: _Planner) -> None:
    """Primary storage (needs an Up host), then the image store (after the first cluster)."""
    spec, st = p.spec, p.spec.storage
    p.add("primary-storage", "primary_storage", {
        "zoneid": Ref("zone"), "name": st.primary_name, "scope": "zone", "hypervisor": "KVM",
        "url": Deferred("efs_dns", "nfs://", st.primary_path), "nfsmountopts": st.primary_nfs_mount_options,
    }, (f"hosts-{spec.first_host.cluster_index}",))
    p.add("image-store", "image_store", {
        "zoneid": Ref("zone"), "name": st.secondary_name, "provider": "NFS",
        "url": Deferred("efs_dns", "nfs://", st.secondary_path),
    }, (f"cluster-{spec.first_cluster.index}", "primary-storage"))


def _plan_console_forwards(p: _Planner, system_ranges: tuple[str, ...]) -> tuple[str, ...]:
    """With spec.consoles: the console-forwards resource (returns its name, or ())."""
    if not p.spec.consoles:
        return ()
    sys_range = p.spec.system_public_range
    # once the zone runs its console proxy: its public IP, for the router's console forwards
    return (p.add("console-forwards", "console_forwards", {
        "zoneid": Ref("zone"), "parameter_name": Deferred("console_forwards_parameter"),
        "console_address": Deferred("console_address"),
        # "first-last": the console proxy must have its public IP from here ("": no such range)
        "system_public_range": sys_range.text if sys_range is not None else "",
        # outputs, declared so that the resource has them as attributes
        "publicip": None, "forwards": None,
    }, ("zone-enable", *system_ranges)),)


#: The secret setting the bind password goes into (the value read from Secrets Manager when applied).
LDAP_BIND_PASSWORD_RESOURCE = "setting-ldap-bind-password"


def _plan_ldap(p: _Planner) -> None:
    """The directory (spec.ldap): its settings and the bind password first (addLdapConfiguration
    binds with them at once, LdapManagerImpl.addConfigurationInternal), then each server, then
    the domain links (linkDomainToLdap needs ldap.basedn). Removing `ldap` deletes them in the
    reverse order: links, servers, then every setting back to CloudStack's default."""
    directory = p.spec.ldap
    if directory is None:
        return
    settings = tuple(p.add(setting_resource_name(s.name), "global_setting", {"name": s.name, "value": s.value})
                     for s in directory.settings)
    password = p.add(LDAP_BIND_PASSWORD_RESOURCE, "secret_setting", {
        "name": "ldap.bind.password", "secret_arn": Deferred("ldap_bind_secret"),
        "secret_version": Deferred("ldap_bind_version")})
    if directory.truststore:
        # LDAPS (LdapConfiguration.getSSLStatus: both set): the file every management server
        # builds at boot, and its password, which the first one generated into its secret
        settings += (p.add(setting_resource_name("ldap.truststore"), "global_setting",
                           {"name": "ldap.truststore", "value": directory.truststore}),
                     p.add(setting_resource_name("ldap.truststore.password"), "secret_setting",
                           {"name": "ldap.truststore.password", "secret_arn": Deferred("ldap_truststore_secret"),
                            "secret_version": ""}))
    servers = tuple(p.add(ldap_server_resource_name(host, port), "ldap_server", {"hostname": host, "port": port},
                          (*settings, password)) for host, port in directory.servers)
    for domain, kind, name, account_type in directory.links:
        p.add(ldap_link_resource_name(domain), "ldap_link",
              {"domain": domain, "type": kind, "ldapdomain": name, "accounttype": account_type}, (*settings, *servers))


def with_console_parameter(spec: RegistrationSpec, console_forwards_parameter: Any) -> RegistrationSpec:
    """The spec as planned for a registration given `console_forwards_parameter`: without one
    ("" or None) there is nowhere to publish the console proxy's address, so no console-forwards
    resource (spec.consoles off). Anything else (a name, a Pulumi Output) keeps spec.consoles."""
    if spec.consoles and console_forwards_parameter in ("", None):
        return dataclasses.replace(spec, consoles=False)
    return spec


def resolve(value: Any, outputs: dict[str, dict[str, Any]], deferred: dict[str, Any]) -> Any:
    """Replace Ref/Deferred by concrete values, in lists and dicts too (the tests' engine;
    Pulumi uses Outputs). A Deferred without a value (an instance id not given) is ""."""
    if isinstance(value, Ref):
        return outputs[value.resource][value.key]
    if isinstance(value, Deferred):
        if not value.prefix and not value.suffix:
            return deferred.get(value.name, "" if value.name != "aws" else {})
        return f"{value.prefix}{deferred.get(value.name, '')}{value.suffix}"
    if isinstance(value, list):
        return [resolve(v, outputs, deferred) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, outputs, deferred) for k, v in value.items()}
    return value
