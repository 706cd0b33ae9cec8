"""What the settings know of EC2 instance types: their form, and the checks on what AWS
says of a type (Nitro, hardware virtualization, x86_64), shared by the control plane's
and the hosts' keys and by `pulumi up`, which asks AWS (components/program/config.py).

Pure module (no Pulumi import).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from components.model import rules
from components.model.settings.base import Problem
from components.model.suggest import nearest

#: An EC2 instance type's form: family.size.
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
#: The sizes AWS names its instance types with, and RDS its classes (db.<family>.<size>):
#: nano, micro, small, medium, large, xlarge, <N>xlarge, metal and metal-<N>xl ("Amazon EC2
#: instance type naming conventions", docs.aws.amazon.com/ec2/latest/instancetypes/instance-type-names.html).
SIZE = re.compile(r"^(nano|micro|small|medium|large|xlarge|[1-9][0-9]*xlarge|metal|metal-[1-9][0-9]*xl)$")
SIZES_ACCEPTED = "nano, micro, small, medium, large, xlarge, <N>xlarge, metal or metal-<N>xl"
#: Families whose virtual sizes run on the Xen hypervisor (DescribeInstanceTypes reports
#: Hypervisor "xen"): none is in AWS's list of "Instances built on the AWS Nitro System"
#: (docs.aws.amazon.com/ec2/latest/instancetypes/ec2-nitro-instances.html), so none can send
#: Transit Gateway multicast. A `.metal` size (i3.metal) is Nitro hardware without a hypervisor.
XEN_FAMILIES = frozenset({
    "c1", "c3", "c4", "cc2", "cg1", "cr1", "d2", "f1", "g2", "g3", "g3s", "h1", "hi1", "hs1", "i2", "i3",
    "m1", "m2", "m3", "m4", "p2", "p3", "r3", "r4", "t1", "t2", "x1", "x1e",
})


def known_not_nitro(name: str) -> bool:
    """A type of a Xen family (XEN_FAMILIES), other than a metal size: known without asking AWS."""
    family, _, size = name.partition(".")
    return family in XEN_FAMILIES and not size.startswith("metal")


def nearest_known_type(name: str) -> Optional[str]:
    """The type of the offline table (components/model/catalog.py) nearest to `name`, or None.

    Only a type that keeps `name`'s family or its size is offered (c5n.larg: c5n.large;
    c5m.large: c5.large): a real type of another family, such as t3.small, is no misspelling
    of a table type that merely shares letters with it (i3.metal)."""
    # Imported here: the catalog's table imports this package for InstanceFacts.
    from components.model import catalog

    close = nearest(name, catalog.known_instance_types())
    if close is None:
        return None
    family, _, size = name.strip().lower().partition(".")
    close_family, _, close_size = close.partition(".")
    return close if family == close_family or size == close_size else None


def _nearest_hint(name: str) -> str:
    close = nearest_known_type(name)
    return f"; did you mean {close}?" if close else ""


@dataclass(frozen=True)
class InstanceTypeName:
    """The rule of an instance-type key: family.size (INSTANCE_TYPE) with a size AWS names
    (SIZE); a misspelt one is told the nearest type of the offline table."""

    example: str

    def __call__(self, c: rules.Check, name: str) -> str:
        if not INSTANCE_TYPE.match(name):
            c.problem(f"expected an EC2 instance type such as {self.example}{_nearest_hint(name)}")
        elif not SIZE.match(name.split(".", 1)[1]):
            c.problem(f"{name.split('.', 1)[1]!r} is not an EC2 instance size ({SIZES_ACCEPTED})"
                      f"{_nearest_hint(name)}")
        return name

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
    #: Private IPv4 addresses one network interface may hold, the primary included
    #: (getInstanceType's `maximum_ipv4_addresses_per_interface`); None: not reported.
    ipv4_addresses_per_interface: Optional[int] = None

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
    """Problems of one role's instance type, given AWS's facts (None: unknown type). A type
    unknown offline is judged only by what its name says (known_not_nitro)."""
    if facts is None:
        return [Problem(key, name, f"is not an instance type offered in this region{_nearest_hint(name)}")]
    if facts.unknown_offline:
        if known_not_nitro(name):
            family = name.split(".")[0]
            return [_not_nitro(key, name, "xen", f" (the {family} family is not built on the AWS Nitro System)")]
        return []
    problems = []
    if not facts.nitro:
        problems.append(_not_nitro(key, name, facts.hypervisor))
    if needs_metal and not facts.runs_kvm:
        problems.append(Problem(key, name, KVM_HOST_TYPES_ACCEPTED))
    if "x86_64" not in facts.architectures:
        problems.append(Problem(key, name,
                                f"is {'/'.join(facts.architectures)}: the CloudStack packages and system VMs "
                                "used here are x86_64"))
    return problems



def unknown_offline_warning(key: str, name: str) -> str:
    """What the offline plan says of a type its table lacks (AWS judges it at preview)."""
    close = nearest_known_type(name)
    return (f"{key} {name} is not in the offline table: unknown offline (Nitro, metal and x86_64 are checked "
            "against AWS at preview), priced as unknown"
            + (f"; the table's nearest type is {close}: check the spelling" if close else ""))


def _not_nitro(key: str, name: str, hypervisor: str, why: str = "") -> Problem:
    return Problem(key, name, f"is a {hypervisor or 'non-Nitro'} type{why}: only Nitro instances can send "
                              "multicast, which the VXLAN overlay needs (e.g. c5n.large, m6i.xlarge)")


InstanceLookup = Callable[[str], "Optional[InstanceFacts]"]
