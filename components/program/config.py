"""Reads the stack's config through Pulumi and validates it, before any resource exists.

The thin Pulumi side of `components.model.settings`: raw values come from `pulumi.Config`,
instance-type facts from AWS (the getInstanceType data source, so a new type works
without a code change). Every problem, from both, is reported in one error.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_aws as aws

from components.model.settings import (
    KEYS,
    NAMESPACE,
    InstanceFacts,
    Problem,
    Settings,
    SettingsError,
    parse_settings,
)
from components.model.settings.provider import AWS_NAMESPACE, aws_problems
from components.model.stackconfig import foreign_key_message, foreign_keys


def _all_config_keys() -> set[str]:
    """Every "namespace:key" of the stack's config."""
    # The SDK has no public enumeration of config; these two sources are what
    # pulumi.Config itself reads from (the engine's bag, and PULUMI_CONFIG).
    from pulumi.runtime import config as runtime_config

    return set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())


def _stack_config_keys() -> set[str]:
    """Names of the keys set in the project's namespace (to catch typos such as `hostcount`)."""
    prefix = f"{NAMESPACE}:"
    return {n[len(prefix):] for n in _all_config_keys() if n.startswith(prefix)}


def foreign_namespace_problems() -> list[Problem]:
    """A key in a namespace nothing reads (`cloudstack:hostCount`): Pulumi passes it on
    silently and the program would run with the default instead."""
    from pulumi.runtime import config as runtime_config

    known = {k.name for k in KEYS}
    return [Problem(key, "(secret)" if runtime_config.is_config_secret(key) else runtime_config.get_config(key),
                    foreign_key_message(key, NAMESPACE, known))
            for key in foreign_keys(_all_config_keys(), NAMESPACE)]


def aws_namespace_problems() -> list[Problem]:
    """The stack's `aws:` keys: each one the provider reads, aws:region a region this program
    deploys to (components.model.settings.provider), before the provider is asked anything."""
    from pulumi.runtime import config as runtime_config

    keys = [key for key in _all_config_keys() if key.startswith(f"{AWS_NAMESPACE}:")]
    return aws_problems({key: runtime_config.get_config(key) for key in keys},
                        secrets={key for key in keys if runtime_config.is_config_secret(key)})


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
        ipv4_addresses_per_interface=int(result.maximum_ipv4_addresses_per_interface or 0) or None,
    )


def region_zones() -> list[str]:
    """The region's regular AZs, sorted (opted-in Local Zones are "available" too, and sort first)."""
    return sorted(aws.get_availability_zones(
        state="available",
        filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])]).names)


def availability_zone_problems(zone: Optional[str]) -> list[Problem]:
    """A named AZ must be one of the region's, checked with the other settings so that
    every problem comes in one round."""
    if not zone:
        return []
    zones = region_zones()
    if zone in zones:
        return []
    return [Problem("availabilityZone", zone, f"is not an available AZ of the region: {', '.join(zones)}")]


def load_settings() -> Settings:
    """Settings of the current stack; raises SettingsError with every problem found."""
    from pulumi.runtime import config as runtime_config

    config = pulumi.Config(NAMESPACE)
    # A key that may hold a secret is read as the engine hands it over (Config.get would warn
    # that it is a secret); which keys are secrets goes to the rules (ldap's bind password).
    secret_keys = {key.name for key in KEYS if runtime_config.is_config_secret(f"{NAMESPACE}:{key.name}")}
    raw = {key.name: runtime_config.get_config(f"{NAMESPACE}:{key.name}") if key.name in secret_keys
           else config.get(key.name) for key in KEYS}
    for extra in _stack_config_keys() - set(raw):
        raw[extra] = config.get(extra)
    provider = aws_namespace_problems()
    # The region's AZs are asked of AWS, which a malformed aws:region cannot answer.
    bad_region = any(p.key == f"{AWS_NAMESPACE}:region" for p in provider)
    extra = (foreign_namespace_problems() + provider
             + ([] if bad_region else availability_zone_problems(raw.get("availabilityZone"))))
    try:
        settings = parse_settings({k: v for k, v in raw.items() if v is not None}, lookup_instance_type,
                                  secret_keys=secret_keys)
    except SettingsError as error:
        raise SettingsError([*error.problems, *extra]) from None
    if extra:
        raise SettingsError(extra)
    for warning in settings.warnings:
        pulumi.log.warn(warning)
    return settings
