"""Registration tier: the CloudStack API endpoint, and the dynamic resource that registers
the zone, pod, clusters, hosts and storage through it (components.registration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from components.model import naming
from components.model import upgrades
from components.model.hosttypes import HostTypes
from components.program.compute import Compute
from components.program import directory
from components.program.context import Context
from components.program.control_plane import ControlPlane
from components.program.data import Data
from components.program.front_end import FrontEnd
from components.program.instances import KVM_HOST_USER
from components.program.network import Network
from components.registration import GlobalSetting, LdapSpec, RegistrationSpec, Timeouts, build_spec
from components.registration.component import (CloudStackRegistration, CloudStackRegistrationArgs,
                                               stack_aws_identity)
from components.registration.upgrade import CloudStackUpgrade


@dataclass(frozen=True)
class Registration:
    """The registration tier's result."""

    #: The CloudStack API's URL (apiEndpoint, else the load balancer's, else the router's
    #: public IP on the UI port).
    api_url: pulumi.Output[str]
    #: What was registered; None when registerCloud is false.
    spec: Optional[RegistrationSpec]
    #: The CloudStack version every instance runs once this update is done (the upgrade's
    #: `version`; without the registration, the recorded or configured one).
    cloudstack_version: pulumi.Input[str] = ""


def declare_registration(ctx: Context, network: Network, data: Data, control: ControlPlane,
                         compute: Compute, front: FrontEnd = FrontEnd()) -> Registration:
    """The registration, when registerCloud is true. It depends on every AWS component
    (`guarded`), so `pulumi destroy` deletes it, and checks for running VMs, first. Behind
    the load balancer it calls the API there, once the load balancer forwards to the servers."""
    settings, router, management = ctx.settings, control.router, control.management
    api_url = (pulumi.Output.from_input(settings.api_endpoint) if settings.api_endpoint
               else pulumi.Output.concat(front.url(router.public_ip), "/client/api"))
    if not settings.register_cloud:
        return Registration(api_url, None, ctx.cloudstack_version)
    spec = registration_spec(ctx, front)
    bind = directory.bind_password(ctx)
    balancer = [] if front.load_balancer is None else [front.load_balancer]
    registration = CloudStackRegistration("registration", CloudStackRegistrationArgs(
        spec=spec,
        api_url=api_url, api_keys_secret_id=management.api_keys_secret_id, region=ctx.region,
        efs_dns=data.storage.dns_name, host_dependencies=compute.hosts.instances,
        depends_on=[*(m.instance for m in control.management_servers), router, *balancer],
        aws_identity=stack_aws_identity(), host_ready_prefix=ctx.prefix.apply(lambda r: f"{r}/{naming.HOST_READY}"),
        console_forwards_parameter=router.console_forwards_parameter, console_address=router.console_public_ip,
        ldap_bind_secret=bind.secret_id if bind else "", ldap_bind_version=bind.version_id if bind else "",
        ldap_truststore_secret=management.ldap_truststore_secret_arn or "",
        guarded=[network.underlay, network.multicast, data.database, data.storage, router,
                 *control.management_servers, compute.hosts, *balancer]))
    upgrade = declare_upgrade(ctx, data, control, compute, api_url, spec, registration)
    return Registration(api_url, spec, upgrade.version)


def declare_upgrade(ctx: Context, data: Data, control: ControlPlane, compute: Compute, api_url: pulumi.Output[str],
                    spec: RegistrationSpec, registration: pulumi.Resource) -> CloudStackUpgrade:
    """The rolling upgrade (components.registration.upgrade): from the recorded version to
    cloudstackVersion, after the registration (hosts added in this update are registered, on
    the recorded version, before it upgrades them with the others). Nothing to do when the
    version is unchanged."""
    management = control.management
    upgrading = upgrades.is_change(ctx.cloudstack_version, ctx.settings.cloudstack_version)
    # The instances are named only to an update that upgrades: scaling hosts changes nothing here.
    hosts = [pulumi.Output.all(inst.id, str(ctx.plan.hosts[i])).apply(lambda v: {"instance": v[0], "ip": v[1]})
             for i, inst in sorted(compute.hosts.instances.items())] if upgrading else []
    return CloudStackUpgrade("cloudstack-upgrade", {
        "endpoint": api_url, "secret_id": management.api_keys_secret_id, "region": ctx.region,
        "aws": stack_aws_identity(), "timeouts": spec.timeouts.as_dict(),
        # systemVmWaitMinutes bounds the same two waits as in the registration: the template Ready
        # and the new secondary storage VM and console proxy running.
        "upgrade_timeouts": {"template": spec.timeouts.system_vms, "system_vms": spec.timeouts.system_vms},
        "from_version": ctx.cloudstack_version, "to_version": ctx.settings.cloudstack_version,
        "management_ids": [m.instance_id for m in control.management_servers] if upgrading else [], "hosts": hosts,
        "db_instance": data.database.identifier, "snapshot_prefix": upgrades.snapshot_prefix(ctx.stack),
        "state_parameter": ctx.prefix.apply(lambda r: f"{r}/{naming.CLOUDSTACK_UPGRADE}"),
    }, pulumi.ResourceOptions(depends_on=[registration]))


def registration_spec(ctx: Context, front: FrontEnd = FrontEnd()) -> RegistrationSpec:
    """What the registration registers, from the IP plan and the hosts' types; behind an
    HTTPS load balancer also CloudStack's settings for a TLS front end."""
    settings = ctx.settings
    minutes = settings.registration_timeout_minutes * 60
    return build_spec(plan=ctx.plan, zone_name=settings.zone_name, host_username=KVM_HOST_USER,
                      hosts_per_cluster=settings.hosts_per_cluster, overlay_mtu=settings.overlay_mtu,
                      timeouts=Timeouts(secret_wait=minutes, api_wait=minutes,
                                        system_vms=settings.system_vm_wait_minutes * 60),
                      host_instance_types=ctx.host_types.types,
                      extra_settings=cross_cluster_migration(ctx.host_types)
                      + tuple(GlobalSetting(*s) for s in front.tls_settings()),
                      allow_destroy_with_vms=settings.destroy_with_running_vms,
                      ldap=LdapSpec.of(settings.ldap) if settings.ldap else None)


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
