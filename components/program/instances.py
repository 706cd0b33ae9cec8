"""What every instance of the deployment shares, whichever tier declares it: its launch
spec (AMI, subnet, root volume, what it waits for) and its overlay settings."""

from __future__ import annotations

from ipaddress import IPv4Address

import pulumi

from components import boot
from components.model.ipplan import IpPlan
from components.model.settings import Settings
from components.program.context import Context
from components.program.data import Data
from components.program.network import Network
from components.resources.node import Grant, InstanceSpec

#: The user the management server logs in as on the KVM hosts, with its own SSH
#: key (key-only root login; see userdata/kvm-host.sh).
KVM_HOST_USER = "root"
#: The private DNS domain of the instances' FQDNs (router.<domain>, management.<domain>, ...).
DOMAIN = "cloudstack.internal"


def overlay_config(settings: Settings, plan: IpPlan, address: IPv4Address, role: str,
                   **extra) -> boot.OverlayConfig:
    """The VXLAN overlay of one instance: `role` "router" (the overlay's gateway) or
    "member" (routes through the router); `extra`: further OverlayConfig fields."""
    return boot.OverlayConfig(
        role=role, vxlan_id=settings.vxlan_id, vxlan_group=str(settings.multicast_group),
        overlay_address=plan.overlay_interface(address), overlay_mtu=settings.overlay_mtu,
        vpc_cidr=str(settings.vpc_cidr),
        overlay_gateway=None if role == "router" else str(plan.router), **extra)


def instance_spec(ctx: Context, network: Network, data: Data, instance_type: str,
                  security_group_ids: list[pulumi.Input[str]], boot_role: str) -> InstanceSpec:
    """An instance in the dedicated subnet, booting `boot_role`'s script (a key of
    boot.boot_objects()) once the subnet is in the multicast domain."""
    # An instance fetches its role script and the library as soon as it boots: the objects must exist.
    shared = boot.SHARED_OBJECTS
    return InstanceSpec(instance_type=instance_type, ami_id=ctx.ami, subnet_id=network.underlay.cloudstack_subnet_id,
                        security_group_ids=security_group_ids, root_volume_gb=ctx.settings.root_volume_gb,
                        wait_for=[network.multicast.association, data.boot_scripts.objects[boot_role],
                                  *(data.boot_scripts.objects[o] for o in shared)],
                        role_grants=[Grant(["s3:GetObject"], [data.boot_scripts.object_arn(o) for o in shared]),
                                     *data.logs.grants(boot_role)])
