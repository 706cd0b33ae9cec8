"""Compute tier: the KVM hosts, one EC2 instance each, of the types the host plan chose."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pulumi

from components import boot
from components.model import naming
from components.program.context import Context
from components.program.data import Data
from components.program.instances import DOMAIN, KVM_HOST_USER, instance_spec, overlay_config
from components.program.network import Network
from components.resources.hosts import KvmHostPool, KvmHostPoolArgs


@dataclass(frozen=True)
class Compute:
    """The compute tier's components."""

    hosts: KvmHostPool


def declare_compute(ctx: Context, network: Network, data: Data, anchor_key_arn: pulumi.Input[str]) -> Compute:
    """Every host of ctx.host_types, in the dedicated subnet; nested virtualization where
    the host's type is virtual (HostTypes.nested_virtualization). `anchor_key_arn`: the
    management server's (ManagementServer.anchor_key_arn)."""
    settings = ctx.settings
    host_base = instance_spec(ctx, network, data, settings.host_instance_type,
                              [network.underlay.member_sg_id], "kvm-host")
    hosts = KvmHostPool(naming.KVM_HOSTS, KvmHostPoolArgs(
        stack=ctx.stack, instance=host_base,
        boot_script_arn=data.boot_scripts.object_arn("kvm-host"), anchor_key_arn=anchor_key_arn,
        packages_arn=data.boot_scripts.packages_arn,
        overlay_ips={i: str(a) for i, a in enumerate(ctx.plan.hosts)},
        render_user_data=lambda index: host_user_data(ctx, data, index, anchor_key_arn), tags=ctx.tags,
        timeout_minutes=settings.host_timeout_minutes, parameter_root=ctx.prefix,
        host_instances={i: dataclasses.replace(host_base, instance_type=t,
                                               nested_virtualization=ctx.host_types.nested_virtualization(i))
                        for i, t in enumerate(ctx.host_types.types)},
        renew=[i for i in range(settings.host_count) if naming.host_name(i) in settings.renew_instances]))
    return Compute(hosts)


def host_user_data(ctx: Context, data: Data, index: int, anchor_key_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """Host `index`'s boot script (its overlay address is ctx.plan.hosts[index])."""
    settings = ctx.settings
    return pulumi.Output.all(ctx.prefix, data.boot_scripts.bucket_name, anchor_key_arn).apply(
        lambda v: boot.render_kvm_host_user_data(boot.KvmHostBoot(
            aws_region=ctx.region, prefix=v[0], fqdn=f"kvm-host-{index}.{DOMAIN}", boot_bucket=v[1],
            anchor_key_arn=v[2],
            overlay=overlay_config(settings, ctx.plan, ctx.plan.hosts[index], "member"),
            cloudstack_version=ctx.cloudstack_version, os_codename=settings.ubuntu_codename,
            host_user=KVM_HOST_USER)))
