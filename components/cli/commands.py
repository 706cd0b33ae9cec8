"""`cloudstack-ec2`: the offline plan of a stack, and its stacks driven through Pulumi's Automation API.

`plan` runs the real program under Pulumi mocks (components.cli.offline): no AWS
credentials, no Pulumi CLI. It reads `Pulumi.yaml` and `Pulumi.<stack>.yaml` from the
project directory as Pulumi does (components.model.stackconfig). Exit status: 0 fine, 2 bad
settings or stack file, 4 above the `--max-hourly-usd` budget (or prices unknown).
`preview|up|refresh|destroy|outputs` drive a stack through the Automation API
(components.cli.automation) and need the Pulumi CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Optional, TextIO

from components.model import catalog
from components.model import ipplan
from components.model import quotas
from components.model import recovery
from components.model import tenantlimits
from components.model.settings import KEYS_BY_NAME, NAMESPACE, SettingsError, parse_settings
from components.model.stackconfig import StackConfig, StackConfigError, apply_set, read_stack
from components.registration import upgrade

DEFAULT_REGION = "us-east-1"
#: Version of the `plan --json` document; raised when a field changes meaning or goes away.
JSON_SCHEMA_VERSION = 1
EXIT_BAD_SETTINGS = 2
EXIT_OVER_BUDGET = 4
TOP_LEVEL = "stack"
COMPONENT_ORDER = ("Underlay", "MulticastDomain", "OverlayRouter", "ManagementServer", "UiLoadBalancer",
                   "RecoveryAlarms", "KvmHostPool", "RdsCloudDb", "EfsStorage", "CloudStackRegistration")
#: Seconds a pair's standby waits for adverts before it takes over from a router that died
#: without a word: three advert intervals of keepalived's advert_int 1 (RFC 5798 section 6.1,
#: Master_Down_Interval = 3 x Advertisement_Interval + Skew_Time). A router stopped cleanly
#: sends a priority-0 advert and hands over at once.
FAILOVER_DETECTION_SECONDS = 3

#: What to show of each resource type: (label, input or state key path).
KEY_PROPERTIES: dict[str, tuple[tuple[str, str], ...]] = {
    "aws:cloudwatch/metricAlarm:MetricAlarm": (("metric", "metricName"), ("actions", "alarmActions")),
    "aws:ec2/vpc:Vpc": (("cidr", "cidrBlock"),),
    "aws:ec2/subnet:Subnet": (("cidr", "cidrBlock"), ("az", "availabilityZone")),
    "aws:ec2/routeTable:RouteTable": (("routes", "routes"),),
    "aws:ec2/route:Route": (("route", "."),),
    "aws:ec2/securityGroup:SecurityGroup": (("ingress", "ingress"),),
    "aws:ec2/instance:Instance": (("type", "instanceType"), ("private ip", "private_ip"),
                                   ("src/dst check", "sourceDestCheck"), ("IMDS tokens", "metadataOptions.httpTokens"),
                                   ("root encrypted", "rootBlockDevice.encrypted"),
                                   ("nested virtualization", "cpuOptions.nestedVirtualization")),
    "aws:ec2/networkInterface:NetworkInterface": (("private ips", "private_ips"), ("src/dst check", "sourceDestCheck")),
    "aws:ec2/eip:Eip": (("public ip", "public_ip"), ("private ip", "associateWithPrivateIp")),
    "aws:ec2transitgateway/transitGateway:TransitGateway": (("multicast", "multicastSupport"),),
    "aws:ec2transitgateway/multicastDomain:MulticastDomain": (("IGMPv2", "igmpv2Support"),
                                                              ("static sources", "staticSourcesSupport")),
    "aws:rds/instance:Instance": (("engine", "engine"), ("version", "engineVersion"), ("class", "instanceClass"),
                                  ("encrypted", "storageEncrypted"), ("multi-AZ", "multiAz"),
                                  ("deletion protection", "deletionProtection")),
    "aws:rds/parameterGroup:ParameterGroup": (("family", "family"), ("parameters", "parameters")),
    "aws:efs/fileSystem:FileSystem": (("throughput", "throughputMode"), ("encrypted", "encrypted")),
    "aws:ssm/parameter:Parameter": (("name", "name"),),
    "aws:secretsmanager/secret:Secret": (("name", "namePrefix"),),
    "aws:lb/loadBalancer:LoadBalancer": (("type", "loadBalancerType"), ("internal", "internal"),
                                         ("dns name", "dns_name")),
    "aws:lb/listener:Listener": (("port", "port"), ("protocol", "protocol"), ("action", "defaultActions.type"),
                                 ("redirect to", "defaultActions.redirect.protocol"), ("TLS policy", "sslPolicy")),
    "aws:lb/targetGroup:TargetGroup": (("targets", "targetType"), ("port", "port"),
                                       ("health check", "healthCheck.path"), ("stickiness", "stickiness.type"),
                                       ("cookie", "stickiness.cookieName")),
    "aws:lb/targetGroupAttachment:TargetGroupAttachment": (("target", "targetId"), ("port", "port")),
    "aws:acm/certificate:Certificate": (("domain", "domainName"), ("validation", "validationMethod")),
    "aws:route53/record:Record": (("name", "name"), ("type", "type")),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": (("TCP port", "fromPort"), ("from", "cidrIpv4"),
                                                                  ("from group", "referencedSecurityGroupId")),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": (("TCP port", "fromPort"),
                                                                ("to group", "referencedSecurityGroupId")),
}

#: IP protocol numbers as security group rules carry them (IANA protocol numbers).
PROTOCOL_NAMES = {"-1": "all traffic", "1": "ICMP", "2": "IGMP", "6": "TCP", "17": "UDP", "icmp": "ICMP",
                  "tcp": "TCP", "udp": "UDP", "all": "all traffic"}
#: Route targets, in the order AWS's route object lists them.
ROUTE_TARGETS = (("gatewayId", "gateway"), ("natGatewayId", "NAT gateway"), ("networkInterfaceId", "ENI"),
                 ("transitGatewayId", "Transit Gateway"), ("vpcEndpointId", "VPC endpoint"),
                 ("vpcPeeringConnectionId", "peering"))


def _lookup(data: dict, path: str) -> Any:
    if path == ".":
        return data or None
    value: Any = data
    for part in path.split("."):
        if isinstance(value, list) and value:
            value = value[0]
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _number(value: Any) -> str:
    # Numbers come back from the engine's protobuf structs as floats.
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def rule_text(rule: dict) -> str:
    """One security group rule as a reader says it: "TCP 8080 from 10.0.0.0/8",
    "IGMP from 0.0.0.0/32", "ICMP type 3 code 4 from 0.0.0.0/0" (for ICMP, EC2's
    fromPort is the type and toPort the code; -1 means any)."""
    protocol = str(rule.get("protocol", "")).lower()
    name = PROTOCOL_NAMES.get(protocol, f"IP protocol {protocol}")
    low, high = _number(rule.get("fromPort", 0)), _number(rule.get("toPort", 0))
    if name == "ICMP":
        what = "ICMP" + ("" if low == "-1" else f" type {low}") + ("" if high == "-1" or low == "-1" else f" code {high}")
    elif name in ("TCP", "UDP"):
        what = f"{name} {low}" if low == high else f"{name} {low}-{high}"
    else:
        what = name  # IGMP and "all traffic" have no ports
    sources = [*(rule.get("cidrBlocks") or []), *(rule.get("ipv6CidrBlocks") or []),
               *(f"group {g}" for g in rule.get("securityGroups") or [])]
    if rule.get("self"):
        sources.append("this group")
    return f"{what} from {', '.join(sources) or 'nowhere'}"


def route_text(route: dict) -> str:
    """"10.100.0.0/16 -> ENI eni-..." (destination, then the target's kind and id)."""
    destination = route.get("destinationCidrBlock") or route.get("cidrBlock") or "?"
    target = next((f"{label} {route[key]}" for key, label in ROUTE_TARGETS if route.get(key)), "local")
    return f"{destination} -> {target}"


def _brief(label: str, value: Any) -> str:
    if isinstance(value, float):
        return _number(value)
    if label == "route" and isinstance(value, dict):
        return route_text(value)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        if "fromPort" in value[0] or "protocol" in value[0]:
            return "; ".join(rule_text(r) for r in value)
        if "name" in value[0] and "value" in value[0]:
            return ", ".join(f"{r['name']}={r['value']}" for r in value)
        if "cidrBlock" in value[0]:
            return ", ".join(route_text(r) for r in value)
    return str(value)


def _unique(items: Iterable[str]) -> list[str]:
    """Each warning once, in first-seen order."""
    return list(dict.fromkeys(i.strip() for i in items if i and i.strip()))


def _resources(run) -> list[dict]:
    """Every custom resource with its key properties (KEY_PROPERTIES) and its component."""
    resources = []
    for reg in sorted((r for r in run.registrations if r.custom), key=lambda r: r.name):
        props = {}
        for label, path in KEY_PROPERTIES.get(reg.type, ()):
            value = _lookup(reg.inputs, path)
            if value is None:
                value = _lookup(reg.state, path)
            if value is not None:
                props[label] = _brief(label, value)
        # A resource outside every component (the stack's own) is listed under "stack".
        component = TOP_LEVEL if reg.component_type == reg.type else reg.component_type.split(":")[-1]
        resources.append({"type": reg.type, "name": reg.name, "component": component, "properties": props})
    return resources


def _vcpus_by_quota(settings, every_host: list[str]) -> list[dict]:
    """The vCPUs of the routers, the management servers and each host type, per EC2 vCPU quota."""
    roles = [("router", settings.router_instance_type, settings.router_count),
             ("management server", settings.management_instance_type, settings.management_server_count)] + [
        ("KVM host", t, every_host.count(t)) for t in dict.fromkeys(every_host)]
    vcpus: dict[str, dict] = {}
    for _role, instance_type, count in roles:
        facts = catalog.instance_facts(instance_type)
        quota = quotas.quota_of(instance_type) or f"unknown quota ({instance_type})"
        entry = vcpus.setdefault(quota, {"quota": quota, "vcpus": 0, "unknown": [], "parts": []})
        if facts is None:
            entry["unknown"].append(f"{count} x {instance_type}")
            entry["parts"].append(f"{count} x {instance_type} (vCPUs unknown offline)")
        else:
            entry["vcpus"] += count * facts.vcpus
            entry["parts"].append(f"{count} x {instance_type} ({facts.vcpus})")
    return list(vcpus.values())


def _ip_plan(settings, clusters) -> dict:
    plan = settings.ip_plan()
    return {
        "overlay": str(plan.overlay), "vpc": str(plan.vpc), "dedicatedSubnet": str(settings.cloudstack_subnet_cidr),
        "router": str(plan.router), "managementServers": [str(a) for a in plan.management_servers],
        "hosts": [{"index": i, "overlayIp": str(a), "cluster": clusters[i]} for i, a in enumerate(plan.hosts)],
        "podSystemRange": str(plan.system_range), "publicRange": str(plan.public_range),
        "systemPublicRange": str(plan.system_public_range),
        "guestVlans": str(plan.guest_vlans), "guestCidr": str(plan.guest_cidr), "zoneDns": str(plan.zone_dns),
        "databaseSubnets": [str(n) for n in settings.db_subnet_cidrs],
        # The load balancer's own subnets (new VPC); with vpcId they are uiSubnetIds, looked up.
        "loadBalancerSubnets": ([str(n) for n in settings.ui_subnet_cidrs] or list(settings.ui_subnet_ids)
                                if settings.ui_behind_load_balancer else []),
        "multicastGroup": str(settings.multicast_group), "multicastMembers": plan.multicast_members,
    }


def _host_capacity(settings, host_types) -> dict:
    return {
        "rows": [{"instanceType": c.instance_type, "hosts": c.hosts, "vcpus": c.vcpus, "memoryGib": c.memory_gib,
                  "hourlyUsd": c.hourly, "virtualization": c.virtualization, "startMinutes": c.start_text,
                  "vcpusText": c.text(c.vcpus), "memoryGibText": c.text(c.memory_gib),
                  "hourlyText": c.text(c.hourly, "{:.3f}")}
                 for c in catalog.host_capacity(settings, host_types)],
        "total": catalog.host_capacity_total(settings, host_types),
    }


def plan_report(run, stack: str, project: str, region: str, notes: Iterable[str] = ()) -> dict:
    """Everything the plan shows, as one JSON-ready document (the text view renders it).
    `summary.hostTypes` lists [{"instanceType", "hosts"}] in host order: existing hosts keep
    their type, so after a hostInstanceType change there are several."""
    settings, spec = run.result.settings, run.result.registration
    limit = ipplan.host_limit(settings.overlay_cidr, settings.cloudstack_subnet_cidr, settings.management_server_count,
                              router_count=settings.router_count)
    # Existing hosts keep their instance type (and cluster): the program's own answer.
    host_types = run.result.host_types.types if run.result.host_types else None
    clusters = run.result.host_clusters or tuple(settings.cluster_of_host(i) for i in range(settings.host_count))
    estimate = catalog.estimate(settings, host_types)
    resources = _resources(run)
    every_host = list(host_types) if host_types else [settings.host_instance_type] * settings.host_count
    cost_lines = [{"item": line.item, "quantity": line.quantity, "unitHourlyUsd": line.unit_hourly,
                   "hourlyUsd": None if line.hourly is None else round(line.hourly, 4)} for line in estimate.lines]
    return {
        "schemaVersion": JSON_SCHEMA_VERSION,
        "project": project, "stack": stack, "region": region,
        "summary": {
            "resources": len(resources),
            "components": len({r["component"] for r in resources} - {TOP_LEVEL}),
            "topLevel": sum(1 for r in resources if r["component"] == TOP_LEVEL),
            "hosts": settings.host_count, "hostInstanceType": settings.host_instance_type,
            "routerCount": settings.router_count,
            "hostTypes": [{"instanceType": t, "hosts": every_host.count(t)} for t in dict.fromkeys(every_host)],
            "clusters": len(set(clusters)), "hostsPerCluster": settings.hosts_per_cluster,
            "vcpusByQuota": _vcpus_by_quota(settings, every_host),
            "hourlyUsd": round(estimate.hourly, 2), "monthlyUsd": round(estimate.monthly, 0),
            "unpriced": list(estimate.unknown),
            "hostLimit": {"hosts": limit.hosts, "decidedBy": limit.deciding, "overlay": limit.overlay,
                          "multicastGroup": limit.multicast, "dedicatedSubnet": limit.subnet},
        },
        "warnings": _unique([*settings.warnings, *run.warnings, *notes]),
        "ipPlan": _ip_plan(settings, clusters),
        "resources": resources,
        "tenants": _tenants(settings),
        "availability": _availability(run),
        "hostCapacity": _host_capacity(settings, host_types),
        "registration": None if spec is None else dataclasses.asdict(spec),
        "upgrade": _upgrade(run),
        "cost": {"lines": cost_lines, "hourlyUsd": round(estimate.hourly, 4), "monthlyUsd": round(estimate.monthly, 2),
                 "unpriced": list(estimate.unknown), "assumptions": estimate.assumptions()},
        "outputs": run.outputs,
    }


def _money(summary: dict) -> str:
    text = f"${summary['hourlyUsd']:.2f}/hour, about ${summary['monthlyUsd']:,.0f}/month"
    if summary["unpriced"]:
        text += f" + unknown ({', '.join(summary['unpriced'])}: not in the price table)"
    return text


def render(report: dict, out: TextIO) -> None:
    """The plan for a reader: the summary first, then warnings, IP plan, resources, registration, cost."""
    _render_summary(report, out)
    _render_ip_plan(report, out)
    _render_availability(report, out)
    _render_resources(report, out)
    _render_registration(report["registration"], out)
    _render_upgrade(report.get("upgrade"), out)
    _render_capacity_and_cost(report, out)


def _render_summary(report: dict, out: TextIO) -> None:
    w = out.write
    summary = report["summary"]
    w(f"CloudStack on EC2 — offline plan of stack {report['stack']!r} ({report['region']}); nothing was created.\n\n")
    w("Summary\n")
    w(f"  resources:     {summary['resources']} in {summary['components']} components"
      + (f" and {summary['topLevel']} of the stack itself" if summary["topLevel"] else "") + "\n")
    types = " + ".join(f"{t['hosts']} x {t['instanceType']}" for t in summary["hostTypes"])
    w(f"  KVM hosts:     {types} in {summary['clusters']} cluster(s) of at most {summary['hostsPerCluster']}\n")
    for entry in summary["vcpusByQuota"]:
        total = f"{entry['vcpus']} vCPUs" + (" + unknown" if entry["unknown"] else "")
        w(f"  vCPU quota:    {total} of \"{entry['quota']}\" ({' + '.join(entry['parts'])})\n")
    w(f"  cost:          {_money(summary)}\n")
    limit = summary["hostLimit"]
    w(f"  host limit: {limit['hosts']} (dedicated subnet {limit['dedicatedSubnet']}, overlay {limit['overlay']}, "
      f"multicast group {limit['multicastGroup']}); {limit['decidedBy']} decides\n")
    if report["warnings"]:
        w("\n")
        for warning in report["warnings"]:
            w(f"WARNING: {warning}\n")


def _tenants(settings) -> dict:
    """What the router gives tenants and system VMs (components/model/tenantlimits.py)."""
    return {"egress": "the router's tenants' Elastic IP (never the infrastructure's)",
            "dns": ("the router's resolver, forwarding to the VPC resolver (tenantPrivateDns)"
                    if settings.tenant_private_dns else
                    "the router's resolver, recursing from the root (no VPC private zones)"),
            "budgets": tenantlimits.summary()}


def _availability(run) -> dict:
    """The routers, the virtual gateway and the failover path; which instances EC2 recovers."""
    settings = run.result.settings
    router = run.outputs.get("router") or {}
    tables = sum(1 for r in run.registrations if r.type == "aws:ec2/route:Route"
                 and r.name.startswith("router-overlay-route-"))
    pair = router.get("pair") or []
    routers = [{"index": i, "privateIp": m.get("privateIp"), "role": "preferred active" if i == 0 else "standby"}
               for i, m in enumerate(pair)] or [{"index": 0, "privateIp": router.get("privateIp"), "role": "only"}]
    targets = recovery.targets(settings.router_instance_type, settings.router_count,
                               settings.management_instance_type, settings.management_server_count)
    return {
        "routerCount": settings.router_count, "gateway": str(settings.ip_plan().router), "routers": routers,
        "failover": None if settings.router_count < 2 else {
            "vrrp": "unicast between the routers' VPC addresses, never on the overlay",
            "detectionSeconds": FAILOVER_DETECTION_SECONDS, "routeTables": tables,
            "takes": f"the overlay route in {tables} route table(s) (ReplaceRoute) and the 3 Elastic IPs "
                     "(AssociateAddress: infrastructure, console, tenants')"},
        # alarm: the system status check alarm recovers the instance (it notifies either way).
        "recovery": [{"instance": name, "instanceType": t, "alarm": recovery.supports_recovery(t)}
                     for name, t in targets],
    }


def _render_availability(report: dict, out: TextIO) -> None:
    w = out.write
    a = report["availability"]
    if a["failover"] is None:
        w(f"\nRouter: one (routerCount 1), gateway {a['gateway']}, no failover: if it stops, the overlay loses "
          "the internet, DNS, the UI forward and storage until EC2 recovers it or it is replaced\n")
    else:
        f = a["failover"]
        w(f"\nRouter pair (routerCount 2): virtual gateway {a['gateway']}, held by the active router\n")
        for r in a["routers"]:
            w(f"  router {r['index']} ({r['role']}): VPC address {r['privateIp']}\n")
        w(f"  VRRP: {f['vrrp']}; a dead active router is detected in about {f['detectionSeconds']} s\n")
        w(f"  failover: the new active router takes {f['takes']}\n")
    for r in a["recovery"]:
        w(f"  recovery alarm on {r['instance']} ({r['instanceType']}): "
          + ("StatusCheckFailed_System -> ec2:recover" if r["alarm"] else recovery.not_recovered_reason(
              r["instanceType"])) + "; StatusCheckFailed_Instance -> ec2:reboot; both notify the alarm topic\n")


def _render_ip_plan(report: dict, out: TextIO) -> None:
    w = out.write
    summary, ip, limit = report["summary"], report["ipPlan"], report["summary"]["hostLimit"]
    w(f"\nIP plan (overlay {ip['overlay']}, VPC {ip['vpc']}, dedicated subnet {ip['dedicatedSubnet']})\n")
    rows = [("router (overlay gateway)" if summary.get("routerCount", 1) == 1 else "virtual gateway (VRRP)",
             ip["router"])]
    rows += [(f"management server {i}", a) for i, a in enumerate(ip["managementServers"])]
    rows += [(f"KVM host {h['index']} (cluster {h['cluster']})", h["overlayIp"]) for h in ip["hosts"]]
    rows += [
        ("pod reserved system range", f"{ip['podSystemRange']} ({_range_size(ip['podSystemRange'])} addresses)"),
        ("public range (virtual routers)", f"{ip['publicRange']} ({_range_size(ip['publicRange'])} addresses)"),
        # (the label within the column's 30 characters; the value says what it is for)
        ("system VMs' public range", f"{ip['systemPublicRange']} ({_range_size(ip['systemPublicRange'])} addresses: "
                                     f"console proxy, secondary storage VM)"),
        ("guest VLANs", ip["guestVlans"]),
        ("guest CIDR", ip["guestCidr"]),
        ("zone DNS (VPC base + 2)", ip["zoneDns"]),
        ("database subnets", ", ".join(ip["databaseSubnets"])),
        *([("load balancer subnets (UI/API)", ", ".join(ip["loadBalancerSubnets"]))]
          if ip.get("loadBalancerSubnets") else []),
        ("host slots left in the overlay", str(limit["overlay"] - summary["hosts"])),
        ("multicast group members", f"{ip['multicastMembers']} of {ipplan.MAX_MULTICAST_MEMBERS} ({ip['multicastGroup']})"),
    ]
    _table(out, ("what", "address"), rows)
    tenants = report["tenants"]
    w(f"\nTenants and system VMs at the router\n  internet address: {tenants['egress']}\n"
      f"  tenants' DNS: {tenants['dns']}\n" + "".join(f"  {line}\n" for line in tenants["budgets"]))


def _render_resources(report: dict, out: TextIO) -> None:
    w = out.write
    summary = report["summary"]
    w("\nResources per component\n")
    groups: dict[str, list] = defaultdict(list)
    for resource in report["resources"]:
        groups[resource["component"]].append(resource)

    # Registrations arrive in no fixed order: show the components as the design lists them.
    def order(component: str) -> int:
        return COMPONENT_ORDER.index(component) if component in COMPONENT_ORDER else len(COMPONENT_ORDER)

    for component in sorted(groups, key=order):
        w(f"  {component} ({len(groups[component])})\n")
        for resource in groups[component]:
            typ = resource["type"]
            short_type = typ.split("/")[-1] if typ.startswith("pulumi-python:dynamic") else typ.split(":")[-1]
            props = "; ".join(f"{k}: {v}" for k, v in resource["properties"].items())
            w(f"    {short_type:<28} {resource['name']}" + (f"  [{props}]" if props else "") + "\n")
    w(f"  total: {summary['resources']} resources\n")


def _render_registration(spec: Optional[dict], out: TextIO) -> None:
    w = out.write
    if spec is None:
        w("\nCloudStack registration: off (registerCloud is false)\n")
        return
    zone, net, pod, public = spec["zone"], spec["physical_network"], spec["pod"], spec["public_range"]
    w("\nCloudStack registration (through the API, once the management server is up)\n")
    w(f"  zone {zone['name']} ({zone['network_type']}), DNS {zone['dns1']}, guest CIDR {zone['guest_cidr']}\n")
    w(f"  physical network {net['name']}: traffic management/guest/public on label {net['traffic_label']}, "
      f"guest VLANs {net['guest_vlan_start']}-{net['guest_vlan_end']}, providers {', '.join(net['providers'])}\n")
    w(f"  pod {pod['name']}: gateway {pod['gateway']}, system range {pod['start_ip']}-{pod['end_ip']}\n")
    w(f"  public range {public['start_ip']}-{public['end_ip']} (gateway {public['gateway']})\n")
    system_public = spec.get("system_public_range")
    if system_public:
        w(f"  system VMs' public range {system_public['start_ip']}-{system_public['end_ip']} (forsystemvms: the "
          f"console proxy's address, never a tenant's)\n")
    for cluster in spec["clusters"]:
        members = [h for h in spec["hosts"] if h["cluster_index"] == cluster["index"]]
        w(f"  cluster {cluster['name']}: hosts " + ", ".join(f"{h['index']}={h['overlay_ip']}" for h in members) + "\n")
    storage = spec["storage"]
    w(f"  primary storage nfs://<EFS>{storage['primary_path']}, secondary nfs://<EFS>{storage['secondary_path']}\n")
    w("  global settings: " + ", ".join(f"{s['name']}={s['value']}" for s in spec["global_settings"]) + "\n")


def _upgrade(run) -> Optional[dict]:
    """{"from", "to", "steps"} of the CloudStack upgrade this update makes, None without one."""
    found = [r for r in run.registrations if r.type == upgrade.TYPE and r.state.get("steps")]
    if not found:
        return None
    state = found[0].state
    return {"from": state["from_version"], "to": state["to_version"], "steps": list(state["steps"])}


def _render_upgrade(report: Optional[dict], out: TextIO) -> None:
    if report is None:
        return
    out.write(f"\nCloudStack upgrade {report['from']} -> {report['to']} (rolling, in this order; README "
              f"'Upgrading CloudStack')\n")
    for step in report["steps"]:
        out.write(f"  {step}\n")


def _render_capacity_and_cost(report: dict, out: TextIO) -> None:
    w = out.write
    summary = report["summary"]
    w("\nKVM host capacity\n")
    _table(out, ("instance type", "hosts", "vCPU each", "GiB each", "USD/hour each", "virtualization",
                 "start (min)"),
           [(c["instanceType"], str(c["hosts"]), c["vcpusText"], c["memoryGibText"], c["hourlyText"],
             c["virtualization"], c["startMinutes"]) for c in report["hostCapacity"]["rows"]])
    w(f"  total: {report['hostCapacity']['total']}\n")
    w("  - start: minutes until a new host's instance runs its boot script (scale-out); the boot script"
      " and addHost add the same on every type\n")

    cost = report["cost"]
    w("\nEstimated cost\n")
    _table(out, ("item", "qty", "USD/hour"),
           [(l["item"], f"{l['quantity']:g}", "unknown" if l["hourlyUsd"] is None else f"{l['hourlyUsd']:.3f}")
            for l in cost["lines"]])
    w(f"  total: {_money(summary)}\n")
    for note in cost["assumptions"]:
        w(f"  - {note}\n")


def _range_size(text: str) -> int:
    from components.model.ipplan import AddressRange

    return AddressRange.parse(text).size


def _table(out: TextIO, header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> None:
    rows = list(rows)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        out.write("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")


def _problem_lines(problems, stack: StackConfig) -> list[str]:
    """Each problem with where its value came from: the stack file, a --set, or the default."""
    lines = []
    for problem in problems:
        full = stack.full_key(problem.key)
        line = f"  - {problem}  [{_origin(stack, problem.key)}]"
        key = KEYS_BY_NAME.get(problem.key)
        if key is not None and key.kind == "str" and full in stack.yaml_numbers:
            text = stack.yaml_numbers[full]
            line += f" (written as the YAML number {text}: quote it, \"{text}\")"
        lines.append(line)
    return lines


def _origin(stack: StackConfig, key: str) -> str:
    """Where a problem's value came from (the stack file, a --set, "default"); a field of an
    object key (ldap.servers[0].port) comes from where the key came from."""
    return stack.origins.get(stack.full_key(key)) or stack.origins.get(
        stack.full_key(re.split(r"[.\[]", key)[0]), "default")


def _stack_notes(stack: StackConfig) -> list[str]:
    """What the plan cannot check or what reads differently elsewhere: secrets, YAML numbers."""
    notes = [f"{key} is a secret: the offline plan cannot decrypt it, so its value is not checked "
             "(the default stands in; `pulumi preview` checks the real value)" for key in sorted(stack.secrets)]
    if not stack.values.get("aws:region"):
        # pulumi-aws reads an unset or empty aws:region from AWS_REGION / AWS_DEFAULT_REGION or
        # the profile (its provider configuration, "region"): the plan cannot know which.
        notes.append(f"aws:region is not set: this plan assumes {DEFAULT_REGION}; `pulumi up` deploys to the "
                     "region of AWS_REGION, AWS_DEFAULT_REGION or your AWS profile — set it with "
                     "`pulumi config set aws:region <region>`")
    for full, text in sorted(stack.yaml_numbers.items()):
        namespace, _, name = full.partition(":")
        key = KEYS_BY_NAME.get(name) if namespace == stack.project else None
        if key is not None and key.kind == "str" and "." in text:
            notes.append(f"{full}: {text} is a YAML number in {stack.origins[full]}; Pulumi passes the text "
                         f"\"{text}\" to the program, but other YAML readers see {float(text):g}: quote it")
    return notes


def load_stack(args: argparse.Namespace) -> StackConfig:
    """The stack file, then every --set in order. Raises StackConfigError."""
    stack = read_stack(Path(args.dir), args.stack)
    for assignment in getattr(args, "set", None) or []:
        apply_set(stack, assignment)
    return stack


class InputError(Exception):
    """An input a command cannot use (stack file, --previous, an argument): exit 2 with
    `message`; `kind` and `detail` go into the JSON error object of `--json`."""

    def __init__(self, kind: str, message: str, **detail: Any):
        super().__init__(message)
        self.kind, self.detail = kind, detail


def _read_stack(args: argparse.Namespace) -> StackConfig:
    """load_stack, its StackConfigError as an InputError (a missing stack lists the others)."""
    from components.model.stackconfig import MissingStackError

    try:
        return load_stack(args)
    except MissingStackError as exc:
        raise InputError("missing-stack", str(exc), stacks=exc.existing) from None
    except StackConfigError as exc:
        raise InputError("stack-config", str(exc)) from None


def _read_previous(args: argparse.Namespace, stack: StackConfig) -> tuple[Optional[dict], list]:
    """--previous FILE: the deployed stack's outputs, and the KVM host instances they say
    exist (offline.instances_of_outputs), which the program then finds as `up` finds them
    in AWS. (None, []) without --previous. Raises InputError."""
    from components.cli.offline import instances_of_outputs
    from components.model.deployed import OutputsError, require_deployed

    if not args.previous:
        return None, []
    try:
        previous = json.loads(Path(args.previous).read_text())
        if not isinstance(previous, dict):
            raise OutputsError("expected the JSON object of `pulumi stack output --json`")
        require_deployed(previous)
        return previous, instances_of_outputs(previous, stack.project, args.stack)
    except (OSError, json.JSONDecodeError, OutputsError) as exc:
        raise InputError("previous-outputs", f"--previous {args.previous}: {exc}") from None


def _fail(args: argparse.Namespace, out: TextIO, err: TextIO, error: InputError,
          project: Optional[str] = None) -> int:
    """Report `error` on stderr and, for --json, as a JSON error object on stdout; exit 2."""
    err.write(f"cloudstack-ec2 {args.command}: {error}\n")
    if getattr(args, "json", False):  # a machine reading stdout learns why there is no plan
        json.dump({"schemaVersion": JSON_SCHEMA_VERSION, "project": project, "stack": args.stack,
                   "error": {"kind": error.kind, "message": str(error), **error.detail}}, out, indent=2)
        out.write("\n")
    return EXIT_BAD_SETTINGS


def _settings_failure(args: argparse.Namespace, stack: StackConfig, exc: SettingsError,
                      out: TextIO, err: TextIO) -> int:
    """Every problem of the settings, each with where its value came from; exit 2."""
    problems = [p for p in exc.problems if stack.full_key(p.key) not in stack.secrets]
    if args.json:  # a machine reading stdout gets the problems too
        json.dump({"schemaVersion": JSON_SCHEMA_VERSION, "project": stack.project, "stack": args.stack,
                   "problems": [{"key": stack.full_key(p.key), "value": p.value, "message": p.message,
                                 "from": _origin(stack, p.key)} for p in problems]},
                  out, indent=2, default=str)
        out.write("\n")
    err.write(f"cloudstack-ec2 plan: {len(problems)} problem(s) in stack {args.stack!r} "
              f"({Path(args.dir) / f'Pulumi.{args.stack}.yaml'}"
              f"{' and --set' if args.set else ''}):\n")
    err.write("\n".join(_problem_lines(problems, stack)) + "\n")
    return EXIT_BAD_SETTINGS


def _previous_notes(args: argparse.Namespace, existing: list) -> list[str]:
    if not existing:
        return []
    return [f"the existing hosts' instance types are those --previous {args.previous} lists (the last update's "
            "outputs); `up` asks AWS, and `cloudstack-ec2 preview` shows what it finds"]


def plan_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The offline plan (module docstring): exit 0, 2 (bad input, nothing planned) or 4 (budget)."""
    from components.model.aws_constraints import AwsInputError
    from components.cli.offline import run_offline
    from components.program import build

    stack = None
    try:
        stack = _read_stack(args)
        previous, existing = _read_previous(args, stack)
        config = dict(stack.values)
        region = config.get("aws:region") or DEFAULT_REGION
        subnet = config.get(f"{NAMESPACE}:cloudstackSubnetCidr")
        run = run_offline(build, config, project=stack.project, stack=args.stack, region=region,
                          subnet_cidrs={"cloudstack": subnet} if subnet else None,
                          previous_outputs=previous, existing_instances=existing)
    except InputError as exc:
        return _fail(args, out, err, exc, stack.project if stack else None)
    except SettingsError as exc:
        return _settings_failure(args, stack, exc, out, err)
    except AwsInputError as exc:
        # `pulumi up` would stop at preview here, with nothing created.
        return _fail(args, out, err, InputError("aws-input", f"stack {args.stack!r}: {exc}"), stack.project)
    report = plan_report(run, args.stack, stack.project, region,
                         [*_stack_notes(stack), *_previous_notes(args, existing)])
    if args.json:
        json.dump(report, out, indent=2, default=str)
        out.write("\n")
    else:
        render(report, out)
    return _budget_gate(report, args.max_hourly_usd, err)


def _budget_gate(report: dict, limit: Optional[float], err: TextIO) -> int:
    """Exit 4 when the plan's hourly cost is above `limit`, or cannot be known in full."""
    if limit is None:
        return 0
    summary = report["summary"]
    if summary["unpriced"]:
        err.write(f"cloudstack-ec2 plan: cannot check --max-hourly-usd {limit:g}: no price for "
                  f"{', '.join(summary['unpriced'])}\n")
        return EXIT_OVER_BUDGET
    if summary["hourlyUsd"] > limit:
        err.write(f"cloudstack-ec2 plan: ${summary['hourlyUsd']:.2f}/hour is above --max-hourly-usd {limit:g}\n")
        return EXIT_OVER_BUDGET
    return 0


def admin_access_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Exit 0 when ADDRESS may reach the UI/API under the stack's adminCidrs, 3 when not,
    2 when the address, the stack file or its adminCidrs cannot be read."""
    stack = None
    try:
        stack = _read_stack(args)
        address = _ipv4_argument("ADDRESS", args.address)
        cidrs = _admin_cidrs(stack)
    except InputError as exc:
        return _fail(args, out, err, exc, stack.project if stack else None)
    covering = [c for c in cidrs if _contains(c, address)]
    if covering:
        out.write(f"{address} may reach the UI/API (adminCidrs {', '.join(covering)})\n")
        return 0
    out.write(f"{address} is not in adminCidrs ({', '.join(cidrs) or 'empty'})\n")
    return 3


def _ipv4_argument(name: str, text: str):
    import ipaddress

    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise InputError("argument", f"{name} {text!r} is not an IPv4 address: give one like 203.0.113.7 (the "
                                     "address you deploy from: curl -s https://checkip.amazonaws.com)") from None


def _admin_cidrs(stack: StackConfig) -> list[str]:
    """The stack's adminCidrs as the program receives them (a JSON list of CIDR texts)."""
    key = f"{NAMESPACE}:adminCidrs"
    text = stack.values.get(key) or "[]"
    try:
        cidrs = json.loads(text)
    except json.JSONDecodeError:
        cidrs = None
    if not isinstance(cidrs, list) or not all(isinstance(c, str) for c in cidrs):
        raise InputError("stack-config", f"{key} = {text!r} [{stack.origins.get(key, 'default')}]: expected a list "
                                       "of CIDRs, e.g. [\"203.0.113.7/32\"]")
    # The settings' own rule for adminCidrs judges each entry (the other keys are the plan's concern).
    try:
        parse_settings({name[len(NAMESPACE) + 1:]: value for name, value in stack.values.items()
                        if name.startswith(f"{NAMESPACE}:")}, known_keys_only=False)
    except SettingsError as exc:
        bad = [p for p in exc.problems if p.key == "adminCidrs"]
        if bad:
            raise InputError("stack-config", f"{key} [{stack.origins.get(key, 'default')}]: "
                                             + "; ".join(p.message for p in bad)) from None
    return cidrs


def _contains(cidr: str, address) -> bool:
    import ipaddress

    try:
        return address in ipaddress.IPv4Network(cidr)
    except ValueError:
        return False


def keys_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print every key of the project's namespace: name, default, one-line meaning."""
    out.write(f"{NAMESPACE}:<key> (pulumi config set <key> <value>): key, default, meaning\n")
    for key in KEYS_BY_NAME.values():
        default = json.dumps(key.default) if not isinstance(key.default, str) else (key.default or '""')
        out.write(f"  {key.name:<30} {default:<14} {key.doc}\n")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cloudstack-ec2")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudstack-ec2", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="show the resources, IP plan, registration and cost of a stack, offline")
    p.add_argument("--stack", default="dev", help="stack name: reads Pulumi.<stack>.yaml (default: dev)")
    p.add_argument("--dir", default=".", help="project directory (default: the current one)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key for this plan as `pulumi config set` would store it, e.g. "
                        "--set hostCount=5, --set aws:region=eu-west-1, --set 'adminCidrs[0]=203.0.113.7/32'")
    p.add_argument("--json", action="store_true",
                   help="print the whole plan as JSON (schemaVersion, project, stack, region, summary, warnings, "
                        "ipPlan, resources, tenants, availability, hostCapacity, registration, cost, outputs); when there is no plan (exit 2), schemaVersion, project, "
                        "stack and either problems (the settings) or error (kind, message)")
    p.add_argument("--max-hourly-usd", type=float, metavar="USD",
                   help="exit 4 when the estimated hourly cost is above USD (or an item has no known price)")
    p.add_argument("--previous", metavar="FILE",
                   help="the deployed stack's outputs (pulumi stack output --json > FILE, or cloudstack-ec2 "
                        "outputs --stack NAME > FILE): plan a later run, with the checks of what cannot change")
    p.set_defaults(handler=plan_command)
    a = sub.add_parser("admin-access", help="does an address fall inside the stack's adminCidrs? (exit 0 yes, 3 no)")
    a.add_argument("address", help="an IPv4 address, e.g. the one you deploy from")
    a.add_argument("--stack", default="dev", help="stack name: reads Pulumi.<stack>.yaml (default: dev)")
    a.add_argument("--dir", default=".", help="project directory (default: the current one)")
    a.set_defaults(handler=admin_access_command)
    k = sub.add_parser("keys", help="list the stack's settings: each key, its default and meaning")
    k.set_defaults(handler=keys_command)
    from components.cli import automation, rotate_keys, status

    automation.add_commands(sub)
    status.add_command(sub, automation.project_root())
    rotate_keys.add_command(sub, automation.project_root())
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        status = args.handler(args, sys.stdout, sys.stderr)
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        # The reader went away (`cloudstack-ec2 plan | head -1`): stop quietly, as
        # cat and grep do. Point stdout at /dev/null so the final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the closed pipe


if __name__ == "__main__":
    sys.exit(main())
