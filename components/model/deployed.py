"""What the stack's last successful update deployed, and the changes AWS cannot make to it.

Pure module (no Pulumi import). The program exports `deployment` (see `record`) with
the values that are chosen once or can only grow; the next run reads it back from the
stack's own outputs (program.read_deployed: a StackReference to the stack itself, which
under `pulumi up`/`preview` returns the outputs of the last completed update, and under
the offline runner the outputs it is given). `check_changes` then refuses, before any
resource is declared, what would replace the subnet, the instances or the database, or
what AWS refuses outright:

- availabilityZone, vpcCidr, cloudstackSubnetCidr: chosen on the first run (a change
  replaces the subnet and everything in it);
- rootVolumeGb: EBS volumes grow but never shrink (EC2 ModifyVolume);
- dbAllocatedStorageGb: RDS never reduces allocated storage (ModifyDBInstance);
- dbEngineVersion: 8.0 -> 8.4 is a major-version upgrade the program performs
  (`upgrading_database`); 8.4 -> 8.0 is a downgrade RDS cannot do;
- cloudstackVersion: the version the instances run; a downgrade or an upgrade the guides
  do not document is refused (components/model/upgrades.py), and instances created later
  install the recorded version (`installed_version`), never one the running servers lack;
- the rest of CHOSEN_ONCE (zoneName, the overlay, the guest network, the database subnets,
  an existing VPC's ids): recorded under `chosenOnce` and refused when changed. A record
  written before `chosenOnce` existed loads as before: those keys are not checked on that
  run, which records them, and are checked from the next one on.

A stack deployed before `deployment` existed has other outputs but not this one: its
SSM parameter root is read from `databaseEndpointParameter`, and the checks begin with
the run after it records `deployment`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from components.model import naming
from components.model import upgrades
from components.model.settings import Problem, Settings
from components.model.settings.operations import renew_advice

#: Name of the stack output this module writes and reads.
OUTPUT = "deployment"
#: The output every version of the program exported (the SSM parameter of the DB endpoint).
LEGACY_PARAMETER_OUTPUT = "databaseEndpointParameter"
#: The router's output; its `consolePrivateIp` stays the console address on later runs.
ROUTER_OUTPUT = "router"
#: The router output's key: router 0 was launched with the pair's boot (router0_in_pair).
ROUTER_IN_PAIR = "bootsInPair"
#: Outputs the next run reads back (program.read_deployed).
#: The UI/API load balancer's output (components/program/outputs.py), present only with one.
LOAD_BALANCER_OUTPUT = "loadBalancer"
READ_OUTPUTS = (OUTPUT, LEGACY_PARAMETER_OUTPUT, ROUTER_OUTPUT, LOAD_BALANCER_OUTPUT)
#: Generation of the instances' boot scripts that `record` writes as `bootScripts`: 2 is the
#: router's tenants' address, resolver and budgets, and the management server's trust
#: anchors under a key and its generated secrets. Running instances keep the script they
#: booted with (components/resources/node.py), so a stack recorded with less must have them
#: replaced (upgrade_warnings).
BOOT_SCRIPTS = 2
#: The record's key of Deployed.front_end_in_place.
FRONT_END_IN_PLACE = "frontEndInPlace"


@dataclass(frozen=True)
class Deployed:
    """Values of the last completed update ("" / None: not known)."""

    availability_zone: str = ""
    vpc_cidr: str = ""
    cloudstack_subnet_cidr: str = ""
    root_volume_gb: Optional[int] = None
    db_allocated_storage_gb: Optional[int] = None
    db_engine_version: str = ""
    #: Root of the SSM parameters in use ("" on the first run).
    parameter_root: str = ""
    #: The router runs on its own network interface with the console address
    #: (components/model/consoles.py); False for a stack deployed before consoles.
    console_address: bool = False
    #: Boot-script generation of the running instances (BOOT_SCRIPTS; 0: before it was recorded).
    boot_scripts: int = 0
    #: The router's console private address ("" before consoles or never deployed).
    console_private_ip: str = ""
    #: Routers deployed: 2 when the router output lists a pair, else 1 (0: never deployed).
    router_count: int = 0
    #: Router 0 was launched with the pair's boot (its user data names its place in the pair;
    #: router output `bootsInPair`). False for a stack that recorded none: unknown.
    router0_in_pair: bool = False
    #: cloudstackVersion the instances run ("X.Y" or "X.Y.Z"; "" before it was recorded).
    cloudstack_version: str = ""
    #: The UI/API was behind the load balancer.
    load_balancer: bool = False
    #: The first management server had marked the cloud bootstrapped when the last update
    #: ran (resources.management.bootstrapped): its bootstrap grants are never declared again.
    bootstrapped: bool = False
    #: Every running instance booted with scripts that follow the front end in place (the
    #: router polls its UI/API forward, the management servers answer whatever connects on
    #: the underlay through it): true from a stack's first update with them on, never for a
    #: stack deployed before (its instances keep their scripts until replaced).
    front_end_in_place: bool = False
    #: CHOSEN_ONCE_RECORDED key -> recorded value ({}: a record written before they were).
    chosen_once: Mapping[str, Any] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return bool(self.parameter_root)


def from_outputs(outputs: Optional[Mapping[str, Any]]) -> Deployed:
    """The Deployed of a stack's outputs (empty mapping or None: never deployed)."""
    outputs = dict(outputs or {})
    recorded = outputs.get(OUTPUT)
    router = outputs.get(ROUTER_OUTPUT)
    console_ip = router.get("consolePrivateIp") if isinstance(router, Mapping) else None
    pair = router.get("pair") if isinstance(router, Mapping) else None
    router_count = len(pair) if isinstance(pair, list) and pair else 1 if isinstance(router, Mapping) else 0
    in_pair = isinstance(router, Mapping) and router.get(ROUTER_IN_PAIR) is True
    if isinstance(recorded, Mapping):
        def number(key: str) -> Optional[int]:
            value = recorded.get(key)
            return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

        return Deployed(
            availability_zone=str(recorded.get("availabilityZone") or ""),
            vpc_cidr=str(recorded.get("vpcCidr") or ""),
            cloudstack_subnet_cidr=str(recorded.get("cloudstackSubnetCidr") or ""),
            root_volume_gb=number("rootVolumeGb"),
            db_allocated_storage_gb=number("dbAllocatedStorageGb"),
            db_engine_version=str(recorded.get("dbEngineVersion") or ""),
            parameter_root=str(recorded.get("parameterRoot") or ""),
            console_address=recorded.get("consoleAddress") is True,
            boot_scripts=number("bootScripts") or 0,
            console_private_ip=console_ip if isinstance(console_ip, str) else "",
            router_count=router_count,
            router0_in_pair=in_pair,
            cloudstack_version=str(recorded.get(upgrades.KEY) or ""),
            load_balancer=isinstance(outputs.get(LOAD_BALANCER_OUTPUT), Mapping),
            bootstrapped=recorded.get("bootstrapped") is True,
            front_end_in_place=recorded.get(FRONT_END_IN_PLACE) is True,
            chosen_once=_recorded_chosen_once(recorded.get(CHOSEN_ONCE_OUTPUT)),
        )
    legacy = outputs.get(LEGACY_PARAMETER_OUTPUT)
    if isinstance(legacy, str) and "/" in legacy:
        # Deployed before `deployment` was exported: keep its parameter names.
        return Deployed(parameter_root=legacy.rsplit("/", 1)[0])
    return Deployed()


def _recorded_chosen_once(recorded: Any) -> dict[str, Any]:
    """The known keys of a record's `chosenOnce` ({} when absent: an older record)."""
    if not isinstance(recorded, Mapping):
        return {}
    return {key: value for key, value in recorded.items() if key in CHOSEN_ONCE_RECORDED}


def installed_version(settings: Settings, deployed: Deployed) -> str:
    """The CloudStack version the instances run, and the one an instance created now installs:
    the recorded one, or cloudstackVersion on a first run (and on a stack deployed before the
    version was recorded). A changed cloudstackVersion becomes it only once the upgrade
    has completed: a host installing it beforehand would refuse the running management
    server of the other version (userdata/kvm-host.sh)."""
    return deployed.cloudstack_version or settings.cloudstack_version


def record(settings: Settings, availability_zone: str, parameter_root: Any,
           cloudstack_version: Any, bootstrapped: bool = False, previous: Deployed = Deployed()) -> dict[str, Any]:
    """The `deployment` output of this run (parameter_root and cloudstack_version, the
    version the instances run at its end, may be Pulumi Outputs; `bootstrapped`: this run
    declared no bootstrap grants; `previous`: the last update's, whose front_end_in_place
    a deployed stack keeps)."""
    return {
        "availabilityZone": availability_zone,
        "vpcCidr": str(settings.vpc_cidr),
        "cloudstackSubnetCidr": str(settings.cloudstack_subnet_cidr),
        "rootVolumeGb": settings.root_volume_gb,
        "dbAllocatedStorageGb": settings.db_allocated_storage_gb,
        "dbEngineVersion": settings.db_engine_version,
        "parameterRoot": parameter_root,
        "consoleAddress": True,
        "bootScripts": BOOT_SCRIPTS,
        upgrades.KEY: cloudstack_version,
        "bootstrapped": bootstrapped,
        FRONT_END_IN_PLACE: previous.front_end_in_place or not previous.exists,
        CHOSEN_ONCE_OUTPUT: chosen_once_values(settings),
    }


#: Settings chosen on the first run, each with what a change would break (README "Scaling
#: hosts", "Settings to choose once", lists the same keys; a test compares them):
#: availabilityZone, vpcCidr and cloudstackSubnetCidr are recorded at the top of the record
#: (_REPLACES), the others under CHOSEN_ONCE_OUTPUT.
CHOSEN_ONCE_OUTPUT = "chosenOnce"
_BAKED = "baked into the running instances' boot and CloudStack's records, which an update does not move"
CHOSEN_ONCE_RECORDED = {
    "zoneName": f"the CloudStack zone's name, {_BAKED}",
    "overlayCidr": f"the hosts' and management servers' overlay addresses, {_BAKED}",
    "vxlanId": f"the overlay's VXLAN id, {_BAKED}",
    "multicastGroup": f"the overlay's multicast group (Transit Gateway multicast), {_BAKED}",
    "guestCidr": f"the guest network's addresses, {_BAKED}",
    "guestVlanRange": f"the zone's guest VLANs, {_BAKED}",
    "dbSubnetCidrs": "the database's subnets: a change replaces the DB subnet group and the database",
    "vpcId": "the existing VPC everything runs in: a change replaces every resource",
    "cloudstackSubnetId": "the existing subnet the instances run in: a change replaces every instance",
    "dbSubnetIds": "the existing database subnets: a change replaces the DB subnet group and the database",
}
CHOSEN_ONCE = ("availabilityZone", "vpcCidr", "cloudstackSubnetCidr", *CHOSEN_ONCE_RECORDED)


def chosen_once_values(settings: Settings) -> dict[str, Any]:
    """CHOSEN_ONCE_RECORDED key -> its value in `settings`, as recorded (str, or a list of str)."""
    return {
        "zoneName": settings.zone_name, "overlayCidr": str(settings.overlay_cidr), "vxlanId": str(settings.vxlan_id),
        "multicastGroup": str(settings.multicast_group), "guestCidr": str(settings.guest_cidr),
        "guestVlanRange": "-".join(str(v) for v in settings.guest_vlan_range),
        "dbSubnetCidrs": [str(n) for n in settings.db_subnet_cidrs], "vpcId": settings.vpc_id,
        "cloudstackSubnetId": settings.cloudstack_subnet_id, "dbSubnetIds": list(settings.db_subnet_ids),
    }


#: What a change of each chosen-once key would replace.
_REPLACES = {
    "availabilityZone": "the dedicated subnet and every instance in it, the EFS mount target and the database subnets",
    "vpcCidr": "the VPC and everything in it: subnets, instances, the database and the EFS mount target",
    "cloudstackSubnetCidr": "the dedicated subnet and every instance in it and the EFS mount target",
}


def instance_urn(stack: str, component: str, name: str) -> str:
    """The URN Pulumi gives the EC2 instance `name` inside the top-level component type
    `component` (e.g. "OverlayRouter") of this project's `stack`, as Pulumi's commands take it."""
    return (f"urn:pulumi:{stack}::{naming.PROJECT}::{naming.PROJECT}:index:{component}"
            f"$aws:ec2/instance:Instance::{name}")


def upgrade_warnings(deployed: Deployed, settings_version: str = "") -> list[str]:
    """What this update changes of a deployed stack that its owner should hear about first
    (nothing on a first run). `settings_version`: cloudstackVersion of this update."""
    warnings = []
    if deployed.exists and deployed.boot_scripts < BOOT_SCRIPTS:
        warnings.append(
            "the running instances keep the boot scripts they started with (a changed user data never replaces "
            "an instance), and this update changes two of them; once it has completed, relaunch them with their "
            "current boot in a second update, never in this one (it deletes the parameters the old management "
            "server wrote, under the names the new one publishes; docs/boot.md, 'Changing a role script'): the "
            "router, for the tenants' own address, their resolver and their budgets (a few minutes without the UI "
            "and internet egress; its Elastic IPs stay), and the management server, for its trust anchors (the "
            "hosts' SSH key and agent version as SecureString) and its generated secrets (its old script reads the "
            "deleted master secret; it keeps the database), before adding hosts: "
            f"{renew_advice(['router', 'management'])}. Not `pulumi up --replace`: it relaunches the recorded boot.")
    if deployed.exists and upgrades.is_change(deployed.cloudstack_version, settings_version) and \
            upgrades.check_version_change(deployed.cloudstack_version, settings_version) is None:
        warnings.append(
            f"this update upgrades CloudStack {deployed.cloudstack_version} -> {settings_version} (README "
            "'Upgrading CloudStack'): Java 17, every management server stopped and an RDS snapshot (the UI and API "
            "are down until the first runs the new version, typically 10-20 minutes), then each KVM host's "
            "agent in turn (VMs keep running), the system VMs recreated and the virtual routers' networks "
            "restarted. `cloudstack-ec2 plan --previous <the stack's outputs>` lists the steps.")
    if deployed.exists and not deployed.console_address:
        warnings.append(
            "this update gives the router the console address for VM consoles (README 'VM consoles'): the router "
            "moves onto a network interface of its own, so it is REPLACED once (a few minutes without the UI and "
            "without internet egress for the cloud; its Elastic IP stays). Then the registration logs the SQL "
            "that gives the running management server its console settings; run it and restart the management "
            "server once (sudo systemctl restart cloudstack-management) so console URLs name the console "
            "address. The console proxy is recreated once inside the system VMs' public range.")
    return warnings


def router0_renewal(settings: Settings, deployed: Deployed) -> bool:
    """Whether this update replaces router 0 so that it boots with the pair's user data: a
    pair is wanted, router 1 exists since an earlier update, and router 0 was launched
    with one router's boot (or a stack that did not record it). Never in the update that
    adds router 1: router 1 must have booted first, to carry the traffic meanwhile."""
    return settings.router_count > 1 and deployed.router_count > 1 and not deployed.router0_in_pair


def router0_in_pair(settings: Settings, deployed: Deployed) -> bool:
    """Whether router 0 runs the pair's boot after this update (the `bootsInPair` output)."""
    if deployed.router_count == 0:  # launched by this update
        return settings.router_count > 1
    return deployed.router0_in_pair or router0_renewal(settings, deployed)


def router_count_warnings(settings: Settings, deployed: Deployed, stack: str) -> list[str]:
    """What a change of routerCount on a deployed stack needs (nothing otherwise). `stack`:
    the stack's name (in the URN to replace)."""
    if deployed.router_count == 1 and settings.router_count > 1:
        # Router 0 keeps the boot script it started with (components/resources/node.py):
        # one that knows nothing of a peer.
        return [
            "routerCount 1 -> 2 adds router 1 beside the running router, which this update does not replace: it "
            "keeps its addresses, its Elastic IPs and the one-router boot it started with, and stays the gateway. "
            "Router 1 holds back while that router runs (its log: 'holding back'), so the overlay never has two "
            "gateways. Once router 1 has booted, run `pulumi up` again: that update replaces router 0 with the "
            "pair's boot; router 1 takes over while it is replaced (one failover) and stays the active router, "
            "router 0 comes back as the standby."]
    if router0_renewal(settings, deployed):
        return [
            "this update replaces router 0 "
            f"('{instance_urn(stack, 'OverlayRouter', 'router')}') so that it boots as part of the pair: it was "
            "launched with one router's boot (or before this was recorded). Router 1 takes the gateway, the "
            "overlay route and the Elastic IPs as soon as the old router 0 has stopped (one failover); it must "
            "have booted already (else the overlay has no gateway until it has). Router 0 comes back as the standby."]
    if deployed.router_count < 2 or settings.router_count > 1:
        return []
    return [
        "routerCount 2 -> 1 deletes router 1. Either router may be the active one: if router 1 is, the overlay "
        "route and the Elastic IPs point at it, and the state still names router 0 (with a pair Pulumi left them "
        "to the active router). Run this update as `pulumi up --refresh` (or `.venv/bin/cloudstack-ec2 refresh`, "
        "then `.venv/bin/cloudstack-ec2 up`): the refresh reads where they point and the update, with one router "
        "owning them again, puts them back on router 0 before router 1 is deleted (the cloud's traffic pauses as "
        "in a failover). Without the refresh nothing is put back and the overlay loses its gateway until a "
        "refresh and an update."]


def upgrading_database(settings: Settings, deployed: Deployed) -> bool:
    """True on the run that upgrades RDS MySQL 8.0 to 8.4 (major version upgrade)."""
    return deployed.db_engine_version == "8.0" and settings.db_engine_version == "8.4"


def check_changes(settings: Settings, deployed: Deployed) -> list[Problem]:
    """Every change from `deployed` that AWS cannot make in place (or that would replace
    the subnet, the instances or the database, or that CloudStack's records and the running
    instances cannot follow: CHOSEN_ONCE), each naming the key, the current and the new value."""
    problems: list[Problem] = []

    def chosen_once(key: str, current: str, new: str) -> None:
        if current and new and current != new:
            problems.append(Problem(key, new, f"is {current} in the deployed stack and is chosen once: changing it "
                                              f"would replace {_REPLACES[key]}; set it back to {current}"))

    if settings.availability_zone and deployed.availability_zone \
            and settings.availability_zone != deployed.availability_zone:
        problems.append(Problem(
            "availabilityZone", settings.availability_zone,
            f"the dedicated subnet is in {deployed.availability_zone} (chosen on the first run); a different AZ "
            f"would replace {_REPLACES['availabilityZone']}: leave availabilityZone empty or set it to "
            f"{deployed.availability_zone}"))
    if not settings.uses_existing_vpc:
        chosen_once("vpcCidr", deployed.vpc_cidr, str(settings.vpc_cidr))
        chosen_once("cloudstackSubnetCidr", deployed.cloudstack_subnet_cidr, str(settings.cloudstack_subnet_cidr))
    if deployed.root_volume_gb is not None and settings.root_volume_gb < deployed.root_volume_gb:
        problems.append(Problem(
            "rootVolumeGb", settings.root_volume_gb,
            f"the instances' root volumes are {deployed.root_volume_gb} GiB; EBS volumes can grow but never shrink "
            f"(EC2 ModifyVolume): keep {deployed.root_volume_gb} or more"))
    if deployed.db_allocated_storage_gb is not None and \
            settings.db_allocated_storage_gb < deployed.db_allocated_storage_gb:
        problems.append(Problem(
            "dbAllocatedStorageGb", settings.db_allocated_storage_gb,
            f"the database has {deployed.db_allocated_storage_gb} GiB; RDS never reduces allocated storage "
            f"(ModifyDBInstance): keep {deployed.db_allocated_storage_gb} or more"))
    if deployed.db_engine_version == "8.4" and settings.db_engine_version == "8.0":
        problems.append(Problem(
            "dbEngineVersion", settings.db_engine_version,
            "the database runs MySQL 8.4; RDS cannot downgrade a major version (restore a snapshot into a new "
            "stack instead): keep 8.4"))
    problems += _chosen_once_changes(settings, deployed)
    version = upgrades.check_version_change(deployed.cloudstack_version, settings.cloudstack_version)
    if version is not None:
        problems.append(version)
    elif upgrades.is_change(deployed.cloudstack_version, settings.cloudstack_version) and not settings.register_cloud:
        problems.append(Problem(
            upgrades.KEY, settings.cloudstack_version,
            f"the stack runs CloudStack {deployed.cloudstack_version}; the upgrade goes through CloudStack's API, "
            f"as the registration does, and registerCloud is false: set registerCloud to true for the upgrade, "
            f"or keep {deployed.cloudstack_version}"))
    return problems


def _chosen_once_changes(settings: Settings, deployed: Deployed) -> list[Problem]:
    """A problem for each CHOSEN_ONCE_RECORDED value that differs from the record (keys the
    record lacks, from a version before they were recorded, are not checked; dbSubnetCidrs
    not with an existing VPC, whose dbSubnetIds are the subnets, as vpcCidr above)."""
    problems = []
    for key, new in chosen_once_values(settings).items():
        if key not in deployed.chosen_once or (key == "dbSubnetCidrs" and settings.uses_existing_vpc):
            continue
        current = deployed.chosen_once[key]
        if current != new:
            # Lists as `--set` and the stack file's JSON take them.
            shown = json.dumps(current) if isinstance(current, list) and current else current or "(not set)"
            problems.append(Problem(
                key, new, f"is {shown} in the deployed stack and is chosen once ({CHOSEN_ONCE_RECORDED[key]}): set "
                f"it back to {shown}; for a different value build a new stack beside this one and move the "
                "workloads to it"))
    return problems


def scale_down_warnings(settings: Settings, deployed: Deployed, existing_hosts: Iterable[int]) -> list[str]:
    """What fewer management servers or hosts take away (nothing on a first run).
    `existing_hosts`: the indexes of the KVM host instances that exist now."""
    if not deployed.exists:
        return []
    warnings = []
    if deployed.load_balancer and not settings.ui_behind_load_balancer:
        warnings.append(
            f"the UI/API load balancer goes away: with managementServerCount {settings.management_server_count}, "
            "no uiLoadBalancer, uiDomainName or uiCertificateArn nothing asks for it, so this update deletes it and "
            "uiUrl, apiEndpoint and the cloudmonkey profile change to http://<the router's Elastic IP>:8080, in "
            "plain HTTP. To keep it (and its URL), set uiLoadBalancer: true")
    leaving = sorted(i for i in existing_hosts if i >= settings.host_count)
    if leaving:
        warnings.append(
            f"hostCount {settings.host_count} removes {', '.join(f'kvm-host-{i}' for i in leaving)}: the "
            "registration puts each into maintenance (its VMs live-migrate to the other hosts) before its "
            "instance is deleted")
    return warnings


#: Name of the stack output that lists the KVM hosts: {"<index>": {"instanceType", "instanceId", "cluster", ...}}.
HOSTS_OUTPUT = "hosts"


class OutputsError(ValueError):
    """A deployed stack's outputs do not say what a later run needs to know."""


#: Where a deployed stack's outputs come from, as a person gives them to a later plan.
OUTPUTS_SOURCES = "`pulumi stack output --json --stack NAME > FILE` or `.venv/bin/cloudstack-ec2 outputs --stack NAME > FILE`"


def require_deployed(outputs: Mapping[str, Any]) -> Deployed:
    """The Deployed of outputs given as those of a deployed stack of this program (the
    plan's --previous FILE). Raises OutputsError when they record no deployment: neither
    the `deployment` output nor, for a stack deployed before it, the legacy
    `databaseEndpointParameter` (e.g. `{}`, or a plan's own --json output); planning on
    them would silently ignore the stack's existing hosts."""
    found = from_outputs(outputs)
    if found.exists:
        return found
    if not outputs:
        what = "holds no outputs (a stack never deployed has none: plan it without --previous)"
    elif "schemaVersion" in outputs:
        what = "is a plan's --json output, not a deployed stack's outputs"
    else:
        what = f"has no `{OUTPUT}` output (found: {', '.join(sorted(outputs))})"
    raise OutputsError(f"{what}: give the outputs of the deployed stack of this program: {OUTPUTS_SOURCES}")


def host_instances(outputs: Optional[Mapping[str, Any]]) -> dict[int, tuple[str, str]]:
    """host index -> (instance id, instance type) of the KVM hosts the last update left, from
    the stack's `hosts` output (`pulumi stack output --json`); {} for a stack never deployed.

    A later `pulumi up` asks AWS for the hosts' instances (resources.hosts.existing_host_types)
    and keeps each host's type; whoever models that run offline needs the same answer.
    Raises OutputsError, naming the missing value and where to find it, when the outputs of a
    deployed stack lack the `hosts` output or a host's instanceType (outputs of a version of
    the program before hosts carried their type): guessing hostInstanceType would plan
    fewer clusters and a different cost than the update makes."""
    outputs = dict(outputs or {})
    if not from_outputs(outputs).exists:
        return {}
    hosts = outputs.get(HOSTS_OUTPUT)
    if not isinstance(hosts, Mapping):
        raise OutputsError(
            f"the outputs of the deployed stack have no `{HOSTS_OUTPUT}` output (found: "
            f"{', '.join(sorted(outputs)) or 'none'}): give all of them (`pulumi stack output --json`); the "
            "existing hosts keep their instance type and the plan cannot tell it without them")
    found: dict[int, tuple[str, str]] = {}
    for key, host in sorted(hosts.items()):
        host = host if isinstance(host, Mapping) else {}
        instance_type, instance_id = host.get("instanceType"), str(host.get("instanceId") or "")
        if not str(key).isdigit():
            raise OutputsError(f"`{HOSTS_OUTPUT}` has the key {key!r}: expected host indexes 0, 1, ...")
        if not isinstance(instance_type, str) or not instance_type:
            raise OutputsError(
                f"`{HOSTS_OUTPUT}.{key}` has no instanceType (outputs of an older version of this program): add "
                f"\"instanceType\": \"<type>\" to it, the type `aws ec2 describe-instances --instance-ids "
                f"{instance_id or '<its instanceId>'} --query 'Reservations[].Instances[].InstanceType'` reports, "
                "or run `cloudstack-ec2 preview`, which asks AWS")
        found[int(key)] = (instance_id or f"host-{key}", instance_type)
    return found
