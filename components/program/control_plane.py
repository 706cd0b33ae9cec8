"""Control-plane tier: the overlay router (the overlay's gateway, NAT and console forwards)
and the CloudStack management server behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from components import boot
from components.model import deployed as deployed_state, ipplan
from components.program import directory
from components.program.context import Context
from components.program.data import Data
from components.program.front_end import FrontEnd
from components.program.instances import DOMAIN, instance_spec, overlay_config
from components.program.lookups import tenant_refused
from components.program.network import Network
from components.resources.management import ManagementServer, ManagementServerArgs, bootstrapped
from components.model.naming import member_name
from components.resources.router import OverlayRouter, OverlayRouterArgs, RouterPairInputs
from components.resources.underlay import CLOUDSTACK_UI_PORT


@dataclass(frozen=True)
class ControlPlane:
    """The control plane's components. `management_servers`: managementServerCount servers,
    index order; the first (index 0) keeps the single server's resource names."""

    router: OverlayRouter
    management_servers: tuple[ManagementServer, ...]

    @property
    def management(self) -> ManagementServer:
        """The first management server: it owns the secrets and the hosts' anchor key."""
        return self.management_servers[0]


def declare_control_plane(ctx: Context, network: Network, data: Data, front: FrontEnd = FrontEnd()) -> ControlPlane:
    """The router(s), then the management servers (their boot scripts need the router's console
    address; with LDAPS all trust the one CA secret); behind the load balancer (`front`) the
    management servers also wear its group and route its subnets back. Their alarms and EC2
    recovery are the operations tier's, with the alarm topic."""
    router = declare_router(ctx, network, data)
    ca = directory.ca_certificate(ctx)
    first = declare_management(ctx, network, data, router, 0, front=front, ca=ca)
    servers = (first, *(declare_management(ctx, network, data, router, i, first, front, ca)
                        for i in range(1, ctx.settings.management_server_count)))
    return ControlPlane(router, servers)


def declare_router(ctx: Context, network: Network, data: Data) -> OverlayRouter:
    """The overlay router: member and router security groups, the overlay route in every route table."""
    underlay, boot_scripts = network.underlay, data.boot_scripts
    refused = tenant_refused(ctx.settings, ctx.region)
    return OverlayRouter("router", OverlayRouterArgs(
        instance=instance_spec(ctx, network, data, ctx.settings.router_instance_type,
                               [underlay.member_sg_id, underlay.router_sg_id], "router"),
        render_user_data=lambda console_ip, tenant_ip, pair: router_user_data(
            ctx, boot_scripts.bucket_name, console_ip, tenant_ip, refused, pair),
        overlay_cidr=str(ctx.settings.overlay_cidr), route_table_ids=underlay.route_table_ids, tags=ctx.tags,
        internet_gateway=underlay.internet_gateway, boot_script_arn=boot_scripts.object_arn("router"),
        parameter_root=ctx.prefix, vm_forwards=[f.dnat for f in ctx.settings.vm_forwards],
        ui_forward=ui_forward(ctx),
        previous_console_ip=ctx.previous.console_private_ip or None, count=ctx.settings.router_count,
        renew_router0=deployed_state.router0_renewal(ctx.settings, ctx.previous),
        renew=ctx.settings.renew_instances))


def ui_forward(ctx: Context) -> str:
    """The router's forward of the UI/API port to the first management server (an
    overlay-network.sh ROUTER_DNAT entry), or "" behind the load balancer: then the UI/API
    is reached through the load balancer only, never in clear through the router."""
    if ctx.settings.ui_behind_load_balancer:
        return ""
    return f"tcp:{CLOUDSTACK_UI_PORT}:{ctx.management_ip}:{CLOUDSTACK_UI_PORT}"


def router_user_data(ctx: Context, boot_bucket: pulumi.Input[str], console_ip: pulumi.Input[str],
                     tenant_ip: pulumi.Input[str], refused: tuple[str, ...],
                     pair: Optional[RouterPairInputs] = None) -> pulumi.Output[str]:
    """A router's boot script: the overlay's gateway (its forward of the UI port, if any,
    comes from an SSM parameter it polls: OverlayRouterArgs.ui_forward); `console_ip` is its
    console address and `tenant_ip` the address tenants leave with (the interface's further
    private IPv4s, which EC2 picks; OverlayRouterArgs.render_user_data); `refused`: what
    tenants must not reach (lookups.tenant_refused); `pair`: with routerCount 2, its place in
    the pair (both routers answer in turn for the gateway address, plan.router; each has its
    own overlay address)."""
    settings, plan = ctx.settings, ctx.plan
    # A pair's routers each have their own overlay address; the gateway (plan.router) is the
    # VRRP address keepalived moves between them (components/boot/router.py check_pair).
    own_address = plan.router if pair is None else ipplan.router_pair_address(plan.overlay, pair.index)
    pair_values = (pulumi.Output.all(pair.peer_private_ip, pair.route_table_ids, pair.eip_allocations)
                   if pair is not None else None)
    return pulumi.Output.all(ctx.prefix, boot_bucket, console_ip, tenant_ip, pair_values).apply(
        lambda v: boot.render_router_user_data(boot.RouterBoot(
            aws_region=ctx.region, prefix=v[0],
            fqdn=f"{member_name('router', pair.index if pair else 0)}.{DOMAIN}", boot_bucket=v[1],
            pair=None if pair is None else boot.RouterPairBoot(
                index=pair.index, peer_private_ip=v[4][0], route_table_ids=tuple(v[4][1]),
                eip_allocations=dict(v[4][2])),
            overlay=overlay_config(settings, plan, own_address, "router",
                storage_cidr=str(settings.cloudstack_subnet_cidr),
                tenant_vpc_access=tuple(str(n) for n in settings.tenant_vpc_access_cidrs),
                console_address=v[2], console_range=str(plan.system_public_range),
                tenant_address=v[3], tenant_dns="forward" if settings.tenant_private_dns else "recurse",
                tenant_refused=refused))))


def declare_management(ctx: Context, network: Network, data: Data, router: OverlayRouter, index: int,
                       first: Optional[ManagementServer] = None, front: FrontEnd = FrontEnd(),
                       ca: Optional[aws.secretsmanager.SecretVersion] = None) -> ManagementServer:
    """Management server `index` (its overlay address: ctx.plan.management_servers[index]); console
    URLs name the router's console Elastic IP. `first`: the first server, for an additional one;
    behind the load balancer (`front`) it wears its group (its boot answers the load balancer
    through the underlay whenever it exists: management-server.sh route_replies); `ca`: the
    directory's LDAPS CA secret (directory.ca_certificate, declared once for every server)."""
    boot_scripts, name = data.boot_scripts, member_name("management", index)
    return ManagementServer(name, ManagementServerArgs(
        stack=ctx.stack,
        instance=instance_spec(ctx, network, data, ctx.settings.management_instance_type,
                               [network.underlay.member_sg_id, *front.management_sg_ids], "management"),
        db_master_secret_arn=data.database.master_secret_arn,
        render_user_data=lambda secret_arns: management_user_data(ctx, secret_arns, index),
        tags=ctx.tags,
        boot_script_arn=boot_scripts.object_arn("management"), boot_bucket=boot_scripts.bucket_name,
        packages_arn=boot_scripts.packages_arn,
        parameter_root=ctx.prefix, console_address=router.console_public_ip, first=first,
        ldap_ca_secret_arn=ca.secret_id if ca else None,
        # Once marked bootstrapped, always: the grants the first server removed stay removed.
        bootstrapping=not (ctx.previous.bootstrapped or bootstrapped(ctx.previous.parameter_root)),
        renew_user_data=name in ctx.settings.renew_instances))


def management_user_data(ctx: Context, secret_arns: dict, index: int = 0) -> str:
    """Management server `index`'s boot script; `secret_arns` as ManagementServer resolves them
    (parameter_root, boot_bucket, db_cloud, keys, admin, api_keys, console_address, anchor_key_arn,
    role_name; with LDAPS ldap_ca and ldap_truststore)."""
    settings, servers = ctx.settings, ctx.plan.management_servers
    return boot.render_management_user_data(boot.ManagementBoot(
        aws_region=ctx.region, prefix=secret_arns["parameter_root"], fqdn=f"{member_name('management', index)}.{DOMAIN}",
        boot_bucket=secret_arns["boot_bucket"], anchor_key_arn=secret_arns["anchor_key_arn"],
        role_name=secret_arns["role_name"],
        overlay=overlay_config(settings, ctx.plan, servers[index], "member"),
        secrets=boot.ManagementSecrets(
            db_cloud=secret_arns["db_cloud"],
            cloudstack_keys=secret_arns["keys"], admin=secret_arns["admin"], api_keys=secret_arns["api_keys"],
            ldap_ca=secret_arns.get("ldap_ca") or "", ldap_truststore=secret_arns.get("ldap_truststore") or ""),
        cloudstack_version=ctx.cloudstack_version, os_codename=settings.ubuntu_codename,
        zone_name=settings.zone_name, console_address=secret_arns["console_address"],
        system_public_range=str(ctx.plan.system_public_range),
        server_index=index, management_servers=tuple(str(a) for a in servers)))
