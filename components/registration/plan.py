"""The registration as an ordered list of resources (pure, no Pulumi).

Both the Pulumi component and the tests' small engine walk this plan, so the
order and the dependencies tested against the emulator are the ones deployed.

Order (CloudStack's installation guide, chapter 6, changed where the notes in parentheses
say why): zone → physical
network → traffic types (KVM label cloudbr0) → providers → pod → public range → the system
VMs' public range (forsystemvms) → global settings (`host` before any addHost) → clusters →
each cluster's hosts (one resource per cluster) → primary storage (needs an Up host) → image store (after the KVM cluster: the system VM template
is registered then, for existing clusters' hypervisors) → zone enabled → console forwards
(the console proxy's public IP for the router, with a console-forwards parameter).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .spec import PROVIDER_ELEMENTS, TRAFFIC_TYPES, RegistrationSpec

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
    #                     | console_forwards_parameter | console_address
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


def plan_registration(spec: RegistrationSpec) -> list[PlannedResource]:
    conn: dict[str, Any] = {
        "endpoint": Deferred("endpoint"),
        "secret_id": Deferred("secret_id"),
        "region": Deferred("region"),
        "timeouts": spec.timeouts.as_dict(),
        # the stack's AWS identity (profile, assumeRoles without secrets) for Secrets Manager / SSM
        "aws": Deferred("aws"),
    }
    z, pn, pod, pub, st = spec.zone, spec.physical_network, spec.pod, spec.public_range, spec.storage
    out: list[PlannedResource] = []

    def add(name: str, kind: str, props: dict[str, Any], depends_on: tuple[str, ...] = (),
            host_indexes: tuple[int, ...] = ()) -> None:
        out.append(PlannedResource(name, kind, {**props, **conn}, depends_on, host_indexes))

    add("zone", "zone", {
        "name": z.name, "networktype": z.network_type, "dns1": z.dns1,
        "internaldns1": z.internal_dns1, "guestcidraddress": z.guest_cidr,
    })
    add("physical-network", "physical_network", {
        "zoneid": Ref("zone"), "name": pn.name, "isolationmethods": pn.isolation_method,
        "vlan": pn.vlan_range, "broadcastdomainrange": "ZONE", "state": "Enabled",
    })
    traffic = []
    for t in TRAFFIC_TYPES:
        name = f"traffic-{t.lower()}"
        traffic.append(name)
        add(name, "traffic_type", {
            "physicalnetworkid": Ref("physical-network"), "traffictype": t, "kvmnetworklabel": pn.traffic_label,
        })
    providers = []
    for p in pn.providers:
        name = f"provider-{p.lower()}"
        providers.append(name)
        add(name, "network_service_provider", {
            "physicalnetworkid": Ref("physical-network"), "name": p, "element": PROVIDER_ELEMENTS[p],
            "state": "Enabled",
        }, tuple(traffic))
    add("pod", "pod", {
        "zoneid": Ref("zone"), "name": pod.name, "gateway": pod.gateway, "netmask": pod.netmask,
        "startip": pod.start_ip, "endip": pod.end_ip,
    }, tuple(providers))
    add("public-range", "public_ip_range", {
        "zoneid": Ref("zone"), "physicalnetworkid": Ref("physical-network"), "gateway": pub.gateway,
        "netmask": pub.netmask, "startip": pub.start_ip, "endip": pub.end_ip, "vlan": pub.vlan,
        "forvirtualnetwork": True,
    }, ("pod", "traffic-public"))
    system_ranges: tuple[str, ...] = ()
    sys_range = spec.system_public_range
    if sys_range is not None:
        # the console proxy's (and secondary storage VM's) public IP comes from here: before the
        # zone is enabled, which launches them
        system_ranges = ("system-public-range",)
        add("system-public-range", "public_ip_range", {
            "zoneid": Ref("zone"), "physicalnetworkid": Ref("physical-network"), "gateway": sys_range.gateway,
            "netmask": sys_range.netmask, "startip": sys_range.start_ip, "endip": sys_range.end_ip,
            "vlan": sys_range.vlan,
            "forvirtualnetwork": True, "forsystemvms": True,
        }, ("pod", "traffic-public", "public-range"))
    settings = []
    for s in spec.global_settings:
        name = setting_resource_name(s.name)
        settings.append(name)
        add(name, "global_setting", {"name": s.name, "value": s.value})
    for c in sorted(spec.clusters, key=lambda c: c.index):
        add(f"cluster-{c.index}", "cluster", {
            "zoneid": Ref("zone"), "podid": Ref("pod"), "clustername": c.name,
            "hypervisor": "KVM", "clustertype": "CloudManaged",
        }, ("public-range",))
    for c in sorted(spec.clusters, key=lambda c: c.index):
        members = sorted((h for h in spec.hosts if h.cluster_index == c.index), key=lambda h: h.index)
        add(f"hosts-{c.index}", "cluster_hosts", {
            "zoneid": Ref("zone"), "podid": Ref("pod"), "clusterid": Ref(f"cluster-{c.index}"),
            "clustername": c.name, "hypervisor": "KVM", "username": members[0].username,
            # <prefix>/host-ready: each host's boot script writes <this>/<overlay ip> when it is
            # ready for addHost ("" : do not wait for it)
            "ready_parameter_prefix": Deferred("host_ready_prefix"),
            "hosts": [{"index": h.index, "ipaddress": h.overlay_ip, "instance": Deferred(f"instance-{h.index}")}
                      for h in members],
            # outputs, declared so that the resource has them as attributes
            "host_ids": None, "states": None, "service": None,
        }, tuple(settings), host_indexes=tuple(h.index for h in members))
    first_hosts = f"hosts-{spec.first_host.cluster_index}"
    add("primary-storage", "primary_storage", {
        "zoneid": Ref("zone"), "name": st.primary_name, "scope": "zone", "hypervisor": "KVM",
        "url": Deferred("efs_dns", "nfs://", st.primary_path), "nfsmountopts": st.primary_nfs_mount_options,
    }, (first_hosts,))
    add("image-store", "image_store", {
        "zoneid": Ref("zone"), "name": st.secondary_name, "provider": "NFS",
        "url": Deferred("efs_dns", "nfs://", st.secondary_path),
    }, (f"cluster-{spec.first_cluster.index}", "primary-storage"))
    add("zone-enable", "zone_enablement", {"zoneid": Ref("zone"), "allocationstate": "Enabled"},
        ("image-store", "primary-storage", "public-range", *system_ranges, *settings))
    consoles = ()
    if spec.consoles:
        # once the zone runs its console proxy: its public IP, for the router's console forwards
        consoles = ("console-forwards",)
        add("console-forwards", "console_forwards", {
            "zoneid": Ref("zone"), "parameter_name": Deferred("console_forwards_parameter"),
            "console_address": Deferred("console_address"),
            # "first-last": the console proxy must have its public IP from here ("": no such range)
            "system_public_range": sys_range.text if sys_range is not None else "",
            # outputs, declared so that the resource has them as attributes
            "publicip": None, "forwards": None,
        }, ("zone-enable", *system_ranges))
    # Last: depends on everything (and, in the component, on every AWS resource), so that
    # `pulumi destroy` deletes it first; its deletion refuses while CloudStack has VMs.
    add("workload-guard", "workload_guard", {"zoneid": Ref("zone"),
                                             "allow_destroy_with_vms": spec.allow_destroy_with_vms},
        ("zone-enable", *(f"hosts-{c.index}" for c in spec.clusters), *consoles))
    return out


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
