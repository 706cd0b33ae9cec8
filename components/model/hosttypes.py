"""The instance type of every KVM host index, and how each is launched (pure, no Pulumi).

KVM hosts keep the instance type they were created with (KvmHostPool pins it: a
type change would stop the host and its VMs), so after `hostInstanceType` changes a
stack has hosts of several types: the existing ones keep theirs, hosts added from
then on get the new one. The program asks AWS which host instances exist and of
what type (by their tags, `existing` here); everything else follows from that:
- each host is declared with its own type, so its inputs never change;
- a host is launched with nested virtualization exactly when its type is virtual
  and AWS lists the processor feature `nested-virtualization` for it;
- hosts of different types never share a CloudStack cluster
  (`components.registration.spec.clusters_for`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from components.model.settings import InstanceFacts, Problem, SettingsError


@dataclass(frozen=True)
class HostTypes:
    """types[i]: the instance type of host i; nested: the types launched with the CPU
    option NestedVirtualization=enabled."""

    types: tuple[str, ...]
    nested: frozenset[str] = frozenset()
    #: Types of every host instance that exists now, those a scale-in is about to remove
    #: included: until they are gone their VMs must not move to another CPU model.
    running: frozenset[str] = frozenset()

    def nested_virtualization(self, index: int) -> bool:
        return self.types[index] in self.nested

    @property
    def mixed(self) -> bool:
        """More than one instance type among the hosts, planned or still running (so more
        than one CPU model for a VM to meet during this run)."""
        return len(set(self.types) | self.running) > 1


def plan_host_types(
    host_count: int,
    configured: str,
    existing: Mapping[int, str],
    facts_of: Callable[[str], Optional[InstanceFacts]],
) -> HostTypes:
    """Host i keeps the type of its existing instance (`existing`: index -> type, as AWS
    reports it); a host without an instance gets `configured` (hostInstanceType).
    `facts_of` is AWS's getInstanceType (the catalog offline). Raises SettingsError when
    AWS no longer describes the type of an existing host: then nobody can tell how that
    host was launched, and guessing could replace it."""
    types = tuple(existing.get(i, configured) for i in range(host_count))
    nested: set[str] = set()
    problems = []
    for instance_type in sorted(set(types)):
        facts = facts_of(instance_type)
        if facts is not None:
            if facts.nested_virtualization:
                nested.add(instance_type)
            continue
        running = [i for i, t in enumerate(types) if t == instance_type and i in existing]
        if running:
            problems.append(Problem("hostInstanceType", configured,
                                    f"existing host(s) {running} run {instance_type}, which AWS does not describe in "
                                    "this region any more: cannot tell how they were launched"))
        # The configured type without facts: the settings have already judged it (refused
        # under AWS; offline, a type the local table lacks), new hosts get no CPU option.
    if problems:
        raise SettingsError(problems)
    return HostTypes(types, frozenset(nested), frozenset(existing.values()))
