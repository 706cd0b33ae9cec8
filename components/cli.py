"""`cloudstack-ec2 plan`: what a stack would build, where every address goes, what it costs.

Runs the real program under Pulumi mocks (components.offline): no AWS credentials,
no Pulumi CLI. Reads `Pulumi.yaml` and `Pulumi.<stack>.yaml` from the project
directory. Exits 2 with every validation problem when the stack's settings are bad.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Optional, TextIO

import yaml

from components import catalog
from components.settings import NAMESPACE, SettingsError

DEFAULT_REGION = "us-east-1"
COMPONENT_ORDER = ("Underlay", "MulticastDomain", "OverlayRouter", "ManagementServer", "KvmHostPool",
                   "RdsCloudDb", "EfsStorage", "CloudStackRegistration")

#: What to show of each resource type: (label, input or state key path).
KEY_PROPERTIES: dict[str, tuple[tuple[str, str], ...]] = {
    "aws:ec2/vpc:Vpc": (("cidr", "cidrBlock"),),
    "aws:ec2/subnet:Subnet": (("cidr", "cidrBlock"), ("az", "availabilityZone")),
    "aws:ec2/routeTable:RouteTable": (("routes", "routes"),),
    "aws:ec2/route:Route": (("destination", "destinationCidrBlock"), ("to ENI", "networkInterfaceId")),
    "aws:ec2/securityGroup:SecurityGroup": (("ingress", "ingress"),),
    "aws:ec2/instance:Instance": (("type", "instanceType"), ("private ip", "private_ip"),
                                   ("src/dst check", "sourceDestCheck"), ("IMDS tokens", "metadataOptions.httpTokens"),
                                   ("root encrypted", "rootBlockDevice.encrypted")),
    "aws:ec2/eip:Eip": (("public ip", "public_ip"),),
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
}


def _lookup(data: dict, path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if isinstance(value, list) and value:
            value = value[0]
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _port(value: Any) -> str:
    # Numbers come back from the engine's protobuf structs as floats.
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _brief(value: Any) -> str:
    if isinstance(value, float):
        return _port(value)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        if "fromPort" in value[0]:
            return "; ".join(
                f"{r.get('protocol')}/{_port(r.get('fromPort'))}-{_port(r.get('toPort'))} from "
                f"{','.join(r.get('cidrBlocks') or []) or ','.join(r.get('securityGroups') or [])}"
                for r in value)
        if "name" in value[0] and "value" in value[0]:
            return ", ".join(f"{r['name']}={r['value']}" for r in value)
        if "cidrBlock" in value[0]:
            return ", ".join(f"{r['cidrBlock']}->{r.get('gatewayId') or r.get('networkInterfaceId')}" for r in value)
    return str(value)


def read_stack(project_dir: Path, stack: str) -> tuple[str, dict[str, Any]]:
    """Project name and the stack's config ({"ns:key": value}), from the YAML files."""
    project_file = project_dir / "Pulumi.yaml"
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    if not project_file.is_file():
        raise FileNotFoundError(f"{project_file} not found: run from the project directory or pass --dir")
    if not stack_file.is_file():
        raise FileNotFoundError(f"{stack_file} not found: the stack {stack!r} has no settings file")
    project = yaml.safe_load(project_file.read_text())["name"]
    config = (yaml.safe_load(stack_file.read_text()) or {}).get("config") or {}
    for key, value in config.items():
        if isinstance(value, dict) and "secure" in value:
            config[key] = "[secret]"
    return project, config


def render(run, out: TextIO, stack: str, region: str) -> None:
    settings, spec = run.result.settings, run.result.registration
    plan = settings.ip_plan()
    w = out.write
    w(f"CloudStack on EC2 — offline plan of stack {stack!r} ({region}); nothing was created.\n\n")
    # The settings' own warnings, then any other the program logged (e.g. the region's).
    warnings = [*settings.warnings, *(x for x in run.warnings if x not in settings.warnings)]
    for warning in warnings:
        w(f"WARNING: {warning}\n")
    if warnings:
        w("\n")

    w(f"IP plan (overlay {plan.overlay}, VPC {plan.vpc}, dedicated subnet {settings.cloudstack_subnet_cidr})\n")
    rows = [("router (overlay gateway)", str(plan.router))]
    rows += [(f"management server {i}", str(a)) for i, a in enumerate(plan.management_servers)]
    rows += [(f"KVM host {i} (cluster {settings.cluster_of_host(i)})", str(a)) for i, a in enumerate(plan.hosts)]
    rows += [
        ("pod reserved system range", f"{plan.system_range} ({plan.system_range.size} addresses)"),
        ("public range (virtual routers)", f"{plan.public_range} ({plan.public_range.size} addresses)"),
        ("guest VLANs", str(plan.guest_vlans)),
        ("guest CIDR", str(plan.guest_cidr)),
        ("zone DNS (VPC base + 2)", str(plan.zone_dns)),
        ("database subnets", ", ".join(str(n) for n in settings.db_subnet_cidrs)),
        ("host slots left in the overlay", str(plan.host_capacity - len(plan.hosts))),
        ("multicast group members", f"{plan.multicast_members} of 100 ({settings.multicast_group})"),
    ]
    _table(out, ("what", "address"), rows)

    w("\nResources per component\n")
    groups: dict[str, list] = defaultdict(list)
    for reg in sorted(run.registrations, key=lambda r: r.name):
        if reg.custom:
            groups[reg.component_type].append(reg)
    total = 0
    # Registrations arrive in no fixed order: show the components as the design lists them.
    def order(component: str) -> int:
        short = component.split(":")[-1]
        return COMPONENT_ORDER.index(short) if short in COMPONENT_ORDER else len(COMPONENT_ORDER)

    for component in sorted(groups, key=order):
        regs = groups[component]
        w(f"  {component.split(':')[-1]} ({len(regs)})\n")
        for reg in regs:
            total += 1
            props = []
            for label, path in KEY_PROPERTIES.get(reg.type, ()):
                value = _lookup(reg.inputs, path)
                if value is None:
                    value = _lookup(reg.state, path)
                if value is not None:
                    props.append(f"{label}: {_brief(value)}")
            short_type = reg.type.split(":")[-1] if not reg.type.startswith("pulumi-python:dynamic") \
                else reg.type.split("/")[-1]
            w(f"    {short_type:<28} {reg.name}" + (f"  [{'; '.join(props)}]" if props else "") + "\n")
    w(f"  total: {total} resources\n")

    if spec is not None:
        w("\nCloudStack registration (through the API, once the management server is up)\n")
        w(f"  zone {spec.zone.name} ({spec.zone.network_type}), DNS {spec.zone.dns1}, guest CIDR {spec.zone.guest_cidr}\n")
        w(f"  physical network {spec.physical_network.name}: traffic management/guest/public on label "
          f"{spec.physical_network.traffic_label}, guest VLANs {spec.physical_network.guest_vlan_start}-"
          f"{spec.physical_network.guest_vlan_end}, providers {', '.join(spec.physical_network.providers)}\n")
        w(f"  pod {spec.pod.name}: gateway {spec.pod.gateway}, system range {spec.pod.start_ip}-{spec.pod.end_ip}\n")
        w(f"  public range {spec.public_range.start_ip}-{spec.public_range.end_ip} (gateway {spec.public_range.gateway})\n")
        for cluster in spec.clusters:
            members = [h for h in spec.hosts if h.cluster_index == cluster.index]
            w(f"  cluster {cluster.name}: hosts " + ", ".join(f"{h.index}={h.overlay_ip}" for h in members) + "\n")
        w(f"  primary storage nfs://<EFS>{spec.storage.primary_path}, secondary nfs://<EFS>{spec.storage.secondary_path}\n")
        w("  global settings: " + ", ".join(f"{s.name}={s.value}" for s in spec.global_settings) + "\n")
    else:
        w("\nCloudStack registration: off (registerCloud is false)\n")

    estimate = catalog.estimate(settings)
    w("\nEstimated cost\n")
    _table(out, ("item", "qty", "USD/hour"),
           [(l.item, f"{l.quantity:g}", "unknown" if l.hourly is None else f"{l.hourly:.3f}") for l in estimate.lines])
    w(f"  total: ${estimate.hourly:.2f}/hour, about ${estimate.monthly:,.0f}/month\n")
    for note in estimate.assumptions():
        w(f"  - {note}\n")


def _table(out: TextIO, header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> None:
    rows = list(rows)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        out.write("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")


def plan_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from components.aws_constraints import AwsInputError
    from components.offline import run_offline
    from components.program import build

    project_dir = Path(args.dir)
    try:
        project, config = read_stack(project_dir, args.stack)
    except (FileNotFoundError, yaml.YAMLError, KeyError) as exc:
        err.write(f"cloudstack-ec2 plan: {exc}\n")
        return 2
    for assignment in args.set or []:
        key, _, value = assignment.partition("=")
        if not _:
            err.write(f"cloudstack-ec2 plan: --set {assignment!r}: expected KEY=VALUE\n")
            return 2
        config[f"{NAMESPACE}:{key}"] = yaml.safe_load(value) if value else ""
    previous = None
    if args.previous:
        try:
            previous = json.loads(Path(args.previous).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            err.write(f"cloudstack-ec2 plan: --previous {args.previous}: {exc}\n")
            return 2
    region = str(config.get("aws:region") or DEFAULT_REGION)
    subnet = config.get(f"{NAMESPACE}:cloudstackSubnetCidr")
    try:
        run = run_offline(build, config, project=project, stack=args.stack, region=region,
                          subnet_cidrs={"cloudstack": str(subnet)} if subnet else None,
                          previous_outputs=previous)
    except SettingsError as exc:
        err.write(f"cloudstack-ec2 plan: stack {args.stack!r} ({project_dir / f'Pulumi.{args.stack}.yaml'}): {exc}\n")
        return 2
    except AwsInputError as exc:
        # `pulumi up` would stop at preview here, with nothing created.
        err.write(f"cloudstack-ec2 plan: stack {args.stack!r}: {exc}\n")
        return 2
    if args.json:
        json.dump({"outputs": run.outputs,
                   "resources": [{"type": r.type, "name": r.name, "component": r.component_type}
                                 for r in run.registrations if r.custom]}, out, indent=2, default=str)
        out.write("\n")
    else:
        render(run, out, args.stack, region)
    return 0


def admin_access_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Exit 0 when ADDRESS may reach the UI/API under the stack's adminCidrs, 3 when not."""
    import ipaddress

    try:
        _, config = read_stack(Path(args.dir), args.stack)
        address = ipaddress.IPv4Address(args.address)
    except (FileNotFoundError, yaml.YAMLError, KeyError, ValueError) as exc:
        err.write(f"cloudstack-ec2 admin-access: {exc}\n")
        return 2
    cidrs = config.get(f"{NAMESPACE}:adminCidrs") or []
    covering = [c for c in cidrs if _contains(c, address)]
    if covering:
        out.write(f"{address} may reach the UI/API (adminCidrs {', '.join(covering)})\n")
        return 0
    out.write(f"{address} is not in adminCidrs ({', '.join(cidrs) or 'empty'})\n")
    return 3


def _contains(cidr: str, address) -> bool:
    import ipaddress

    try:
        return address in ipaddress.IPv4Network(cidr)
    except ValueError:
        return False


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="cloudstack-ec2", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="show the resources, IP plan, registration and cost of a stack, offline")
    p.add_argument("--stack", default="dev", help="stack name: reads Pulumi.<stack>.yaml (default: dev)")
    p.add_argument("--dir", default=".", help="project directory (default: the current one)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key of the stack for this plan, e.g. --set hostCount=5")
    p.add_argument("--json", action="store_true", help="print the outputs and resources as JSON")
    p.add_argument("--previous", metavar="FILE",
                   help="the deployed stack's outputs (pulumi stack output --json > FILE): plan a later run, "
                        "with the checks of what cannot change")
    a = sub.add_parser("admin-access", help="does an address fall inside the stack's adminCidrs? (exit 0 yes, 3 no)")
    a.add_argument("address", help="an IPv4 address, e.g. the one you deploy from")
    a.add_argument("--stack", default="dev")
    a.add_argument("--dir", default=".")
    args = parser.parse_args(argv)
    command = {"plan": plan_command, "admin-access": admin_access_command}[args.command]
    return command(args, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
