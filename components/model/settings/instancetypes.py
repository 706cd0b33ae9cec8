"""What the settings know of EC2 instance types: their form, and the checks on what AWS
says of a type (Nitro, hardware virtualization, x86_64), shared by the control plane's
and the hosts' keys and by `pulumi up`, which asks AWS (components/program/config.py).

Pure module (no Pulumi import).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from components.model.settings.base import Problem

#: An EC2 instance type's form: family.size.
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")

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



InstanceLookup = Callable[[str], "Optional[InstanceFacts]"]
