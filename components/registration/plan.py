"""The registration as an ordered list of resources (pure, no Pulumi).

Both the Pulumi component and the tests' small engine walk this plan, so the
order and the dependencies tested against the emulator are the ones deployed.

Order (install guide chapter 6, with DESIGN.md's corrections): zone → physical
network → traffic types (KVM label cloudbr0) → providers → pod → public range →
global settings (`host` before any addHost) → clusters → hosts → primary storage
(needs an Up host) → image store (after the KVM cluster: the system VM template
is registered then, for existing clusters' hypervisors) → zone enabled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .spec import PROVIDER_ELEMENTS, TRAFFIC_TYPES, RegistrationSpec

#: Connection properties every resource carries. Not secrets: the keys are read
#: at run time from the secret named here and never stored.
CONNECTION_KEYS = ("endpoint", "secret_id", "region", "timeouts")


@dataclass(frozen=True)
class Ref:
    """An output (default: the CloudStack id) of another planned resource."""

    resource: str
    key: str = "id"


@dataclass(frozen=True)
class Deferred:
    """A value known only at deploy time (a Pulumi input), with fixed text around it."""

    name: str           # endpoint | secret_id | region | efs_dns
    prefix: str = ""
    suffix: str = ""


@dataclass(frozen=True)
class PlannedResource:
    name: str
    kind: str
    props: dict[str, Any]
    depends_on: tuple[str, ...] = ()
    host_index: int | None = None   # set on hosts: their EC2 instance is an extra dependency

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
    }
    z, pn, pod, pub, st = spec.zone, spec.physical_network, spec.pod, spec.public_range, spec.storage
    out: list[PlannedResource] = []

    def add(name: str, kind: str, props: dict[str, Any], depends_on: tuple[str, ...] = (),
            host_index: int | None = None) -> None:
        out.append(PlannedResource(name, kind, {**props, **conn}, depends_on, host_index))

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
    for h in sorted(spec.hosts, key=lambda h: h.index):
        add(f"host-{h.index}", "host", {
            "zoneid": Ref("zone"), "podid": Ref("pod"), "clusterid": Ref(f"cluster-{h.cluster_index}"),
            "url": h.url, "ipaddress": h.overlay_ip, "username": h.username, "hypervisor": "KVM",
        }, tuple(settings), host_index=h.index)
    first_host = f"host-{spec.first_host.index}"
    add("primary-storage", "primary_storage", {
        "zoneid": Ref("zone"), "name": st.primary_name, "scope": "zone", "hypervisor": "KVM",
        "url": Deferred("efs_dns", "nfs://", st.primary_path), "nfsmountopts": st.primary_nfs_mount_options,
    }, (first_host,))
    add("image-store", "image_store", {
        "zoneid": Ref("zone"), "name": st.secondary_name, "provider": "NFS",
        "url": Deferred("efs_dns", "nfs://", st.secondary_path),
    }, (f"cluster-{spec.first_cluster.index}", "primary-storage"))
    add("zone-enable", "zone_enablement", {"zoneid": Ref("zone"), "allocationstate": "Enabled"},
        ("image-store", "primary-storage", "public-range", *settings))
    return out


def resolve(value: Any, outputs: dict[str, dict[str, Any]], deferred: dict[str, Any]) -> Any:
    """Replace Ref/Deferred by concrete values (the tests' engine; Pulumi uses Outputs)."""
    if isinstance(value, Ref):
        return outputs[value.resource][value.key]
    if isinstance(value, Deferred):
        return f"{value.prefix}{deferred[value.name]}{value.suffix}"
    return value
