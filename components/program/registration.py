"""Registration tier: the CloudStack API endpoint, and the dynamic resource that registers
the zone, pod, clusters, hosts and storage through it (components.registration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from components.model import naming
from components.model.hosttypes import HostTypes
from components.program.compute import Compute
from components.program.context import Context
from components.program.control_plane import ControlPlane
from components.program.data import Data
from components.program.instances import KVM_HOST_USER
from components.program.network import Network
from components.registration import GlobalSetting, RegistrationSpec, Timeouts, build_spec
from components.registration.component import (CloudStackRegistration, CloudStackRegistrationArgs,
                                               stack_aws_identity)
from components.resources.underlay import CLOUDSTACK_UI_PORT


@dataclass(frozen=True)
class Registration:
    """The registration tier's result."""

    #: The CloudStack API's URL (apiEndpoint, or the router's public IP on the UI port).
    api_url: pulumi.Output[str]
    #: What was registered; None when registerCloud is false.
    spec: Optional[RegistrationSpec]


def declare_registration(ctx: Context, network: Network, data: Data, control: ControlPlane,
                         compute: Compute) -> Registration:
    """The registration, when registerCloud is true. It depends on every AWS component
    (`guarded`), so `pulumi destroy` deletes it, and checks for running VMs, first."""
    settings, router, management = ctx.settings, control.router, control.management
    api_url = (pulumi.Output.from_input(settings.api_endpoint) if settings.api_endpoint
               else pulumi.Output.concat("http://", router.public_ip, f":{CLOUDSTACK_UI_PORT}/client/api"))
    if not settings.register_cloud:
        return Registration(api_url, None)
    spec = registration_spec(ctx)
    CloudStackRegistration("registration", CloudStackRegistrationArgs(
        spec=spec,
        api_url=api_url, api_keys_secret_id=management.api_keys_secret_id, region=ctx.region,
        efs_dns=data.storage.dns_name, host_dependencies=compute.hosts.instances,
        depends_on=[*(m.instance for m in control.management_servers), router],
        aws_identity=stack_aws_identity(), host_ready_prefix=ctx.prefix.apply(lambda r: f"{r}/{naming.HOST_READY}"),
        console_forwards_parameter=router.console_forwards_parameter, console_address=router.console_public_ip,
        guarded=[network.underlay, network.multicast, data.database, data.storage, router,
                 *control.management_servers, compute.hosts]))
    return Registration(api_url, spec)


def registration_spec(ctx: Context) -> RegistrationSpec:
    """What the registration registers, from the IP plan and the hosts' types."""
    settings = ctx.settings
    minutes = settings.registration_timeout_minutes * 60
    return build_spec(plan=ctx.plan, zone_name=settings.zone_name, host_username=KVM_HOST_USER,
                      hosts_per_cluster=settings.hosts_per_cluster, overlay_mtu=settings.overlay_mtu,
                      timeouts=Timeouts(secret_wait=minutes, api_wait=minutes,
                                        system_vms=settings.system_vm_wait_minutes * 60),
                      host_instance_types=ctx.host_types.types,
                      extra_settings=cross_cluster_migration(ctx.host_types),
                      allow_destroy_with_vms=settings.destroy_with_running_vms)


def cross_cluster_migration(host_types: HostTypes) -> tuple[GlobalSetting, ...]:
    """With hosts of more than one instance type (planned, or still running: a scale-in
    removing the last hosts of a type must not flip the setting before they are gone),
    VMs must not live-migrate between clusters: the clusters then differ in CPU model,
    and a host-passthrough guest moved to another CPU fails or crashes. A scale-in that
    empties a cluster then stops with the VMs named (nothing lost) instead."""
    if not host_types.mixed:
        return ()
    return (GlobalSetting("migrate.vm.across.clusters", "false",
                          "the clusters run different instance types (CPU models): host-passthrough guests "
                          "must not live-migrate between them"),)
