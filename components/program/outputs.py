"""The stack outputs: what `pulumi stack output` shows, and what the next run reads back."""

from __future__ import annotations

from typing import Any

import pulumi

from components.model import catalog
from components.model import cloudmonkey, naming
from components.model import deployed as deployed_state
from components.program.compute import Compute
from components.program.context import Context
from components.program.control_plane import ControlPlane
from components.program.data import Data
from components.program.front_end import FrontEnd
from components.program.network import Network
from components.program.registration import Registration


def stack_outputs(ctx: Context, network: Network, data: Data, control: ControlPlane, compute: Compute,
                  registration: Registration, front: FrontEnd = FrontEnd()) -> dict[str, Any]:
    """Output name -> value (plain, or a pulumi.Output), in the order `pulumi stack output` lists them."""
    settings, plan, router, management = ctx.settings, ctx.plan, control.router, control.management
    cost = catalog.estimate(settings, ctx.host_types.types)
    api_url = registration.api_url
    return {
        "uiUrl": pulumi.Output.concat(front.url(router.public_ip), "/client/"),
        "apiEndpoint": api_url,
        "zoneName": settings.zone_name,
        "overlayCidr": str(settings.overlay_cidr),
        "router": {"overlayIp": str(plan.router), "privateIp": router.private_ip, "publicIp": router.public_ip,
                   "instanceId": router.instance_id, "consolePrivateIp": router.console_private_ip,
                   "consolePublicIp": router.console_public_ip, "tenantPublicIp": router.tenant_public_ip,
                   deployed_state.ROUTER_IN_PAIR: deployed_state.router0_in_pair(settings, ctx.previous),
                   # With routerCount 2: each router of the pair (index 0 is the preferred active one).
                   **({"pair": [{"privateIp": m.eni.private_ip, "instanceId": m.instance.id, "eniId": m.eni.id,
                                 "consolePrivateIp": m.console_private_ip, "tenantPrivateIp": m.tenant_private_ip}
                                for m in router.members]} if len(router.members) > 1 else {})},
        "managementServer": {"overlayIp": str(ctx.management_ip), "privateIp": management.private_ip,
                             "instanceId": management.instance_id},
        # Every management server, the first (managementServer) first: the targets of a load balancer.
        "managementServers": [{"overlayIp": str(plan.management_servers[i]), "privateIp": m.private_ip,
                               "instanceId": m.instance_id} for i, m in enumerate(control.management_servers)],
        "hosts": {str(i): {"overlayIp": str(plan.hosts[i]), "privateIp": inst.private_ip, "instanceId": inst.id,
                           "cluster": ctx.host_clusters[i], "instanceType": ctx.host_types.types[i]}
                  for i, inst in compute.hosts.instances.items()},
        "secretArns": {**{k.replace("-", "_"): v for k, v in management.secret_arns.items()},
                       "db_master": data.database.master_secret_arn},
        "databaseEndpointParameter": data.database.endpoint_parameter,
        "efsFileSystemId": data.storage.file_system_id,
        "transitGatewayId": network.multicast.transit_gateway_id,
        "multicastDomainId": network.multicast.multicast_domain_id,
        "registered": registration.spec is not None,
        **load_balancer_output(front),
        "estimatedHourlyCostUsd": round(cost.hourly, 2),
        "estimatedMonthlyCostUsd": round(cost.monthly, 0),
        # Read back on the next run (components.model.deployed): what is chosen once or only grows.
        deployed_state.OUTPUT: deployed_state.record(settings, ctx.zone, ctx.prefix,
                                                      registration.cloudstack_version,
                                                      bootstrapped=not management.bootstrapping,
                                                      previous=ctx.previous),
        # The humans' admin login, never the registration's keys (api-keys).
        "cloudmonkey": pulumi.Output.all(api_url, management.secret_arns[naming.SECRET_ADMIN]).apply(
            lambda args: cloudmonkey.cmk_profile(ctx.stack, args[0], args[1], ctx.region)),
    }


def load_balancer_output(front: FrontEnd) -> dict[str, Any]:
    """`loadBalancer` when the UI/API is behind one: its DNS name (point your own name at it
    when the stack does not write the alias), URL, subnets and certificate."""
    balancer = front.load_balancer
    if balancer is None:
        return {}
    return {"loadBalancer": {"dnsName": balancer.dns_name, "url": balancer.url, "subnetCidrs": list(front.subnet_cidrs),
                             "https": front.https_url is not None, "certificateArn": balancer.certificate_arn or ""}}
