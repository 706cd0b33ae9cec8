"""Reads the stack's config through Pulumi and validates it, before any resource exists.

The thin Pulumi side of `components.settings`: raw values come from `pulumi.Config`,
instance-type facts from AWS (the getInstanceType data source, so a new type works
without a code change). Every problem, from both, is reported in one error.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_aws as aws

from components.settings import (
    KEYS,
    NAMESPACE,
    InstanceFacts,
    Settings,
    parse_settings,
)


def _stack_config_keys() -> set[str]:
    """Names of the keys set in the project's namespace (to catch typos such as `hostcount`)."""
    # The SDK has no public enumeration of config; these two sources are what
    # pulumi.Config itself reads from (the engine's bag, and PULUMI_CONFIG).
    from pulumi.runtime import config as runtime_config

    names = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    prefix = f"{NAMESPACE}:"
    return {n[len(prefix):] for n in names if n.startswith(prefix)}


def lookup_instance_type(instance_type: str) -> Optional[InstanceFacts]:
    # Ask whether the type exists first: a failed invoke aborts the whole Pulumi
    # program (even when caught), and an empty filter result does not.
    offered = aws.ec2.get_instance_types(filters=[
        aws.ec2.GetInstanceTypesFilterArgs(name="instance-type", values=[instance_type])]).instance_types
    if instance_type not in (offered or []):
        return None
    result = aws.ec2.get_instance_type(instance_type=instance_type)
    return InstanceFacts(
        instance_type=instance_type,
        hypervisor=result.hypervisor or "",
        bare_metal=bool(result.bare_metal),
        architectures=tuple(result.supported_architectures or ()),
        vcpus=int(result.default_vcpus or 0),
        memory_mib=int(result.memory_size or 0),
        # ProcessorInfo.SupportedFeatures (terraform-provider-aws: supported_cpu_features).
        processor_features=tuple(result.supported_cpu_features or ()),
    )


def load_settings() -> Settings:
    """Settings of the current stack; raises SettingsError with every problem found."""
    config = pulumi.Config(NAMESPACE)
    raw = {key.name: config.get(key.name) for key in KEYS}
    for extra in _stack_config_keys() - set(raw):
        raw[extra] = config.get(extra)
    settings = parse_settings({k: v for k, v in raw.items() if v is not None}, lookup_instance_type)
    for warning in settings.warnings:
        pulumi.log.warn(warning)
    return settings
