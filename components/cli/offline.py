"""Runs the program under Pulumi mocks: no AWS account, no Pulumi CLI.

The offline `plan` command and the unit tests both use this. The mocks answer the
program's AWS look-ups from the local catalog (instance facts), invent plausible ids
and addresses for created resources, and record every registration with its parent
chain and its dependencies, so a caller can see exactly what `pulumi up` would declare.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ipaddress
import threading
import pickle
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.proto import engine_pb2
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.sync_await import _sync_await

from components.model import aws_constraints
from components.model import catalog
from components.model import deployed
from components.model import ipplan
from components.model import regions
from components.model.settings import UNKNOWN_OFFLINE_HYPERVISOR
from components.registration import upgrade

ACCOUNT_ID = "123456789012"
#: Documentation ranges (RFC 5737), so an invented address can never be mistaken for a real one.
PUBLIC_ADDRESSES = ipaddress.IPv4Network("198.51.100.0/24")


#: The AZ letters of a few regions (every account sees these names; `aws ec2
#: describe-availability-zones`, AWS "Regions and Zones" documentation); other regions: a-c.
REGION_AZ_LETTERS = {"us-east-1": "abcdef", "us-east-2": "abc", "us-west-2": "abcd",
                     "eu-west-1": "abc", "eu-central-1": "abc"}


#: Types the AWS provider names itself when the program gives no name.
AUTO_NAMED = ("aws:rds/parameterGroup:ParameterGroup", "aws:rds/subnetGroup:SubnetGroup")


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    inputs: dict
    custom: bool
    id: str
    state: dict
    parent_urn: str
    dependencies: tuple[str, ...]
    #: Resource options as the engine receives them.
    protect: bool = False
    ignore_changes: tuple[str, ...] = ()
    replace_on_changes: tuple[str, ...] = ()
    delete_before_replace: bool = False
    additional_secret_outputs: tuple[str, ...] = ()
    #: (create, update, delete) custom timeouts; "" where the provider's default applies.
    custom_timeouts: tuple[str, str, str] = ("", "", "")

    @property
    def component_type(self) -> str:
        """The outermost component this resource belongs to (a top-level resource: its own type)."""
        chain = [t for t in self.urn.split("::")[2].split("$") if t != "pulumi:pulumi:Stack"]
        return chain[0]


class SubnetFullError(Exception):
    """The offline allocator ran out of addresses in the dedicated subnet."""


def _stable_number(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


@dataclass(frozen=True)
class ExistingInstance:
    """An EC2 instance that already runs in the account (DescribeInstances answers with it):
    how a test shows the program a stack that was deployed before."""

    id: str
    instance_type: str
    tags: Mapping[str, str]
    state: str = "running"


def instances_of_outputs(previous_outputs: Optional[Mapping[str, Any]], project: str,
                         stack: str) -> list[ExistingInstance]:
    """The KVM host instances a deployed stack's outputs say exist, tagged as KvmHostPool tags
    them, so that the program's lookup of its existing hosts (resources.hosts.existing_host_types,
    DescribeInstances by tag) finds them offline as it finds them in AWS under `pulumi up`.
    [] for a stack never deployed. Raises deployed.OutputsError when the outputs do not say
    each host's instance type (deployed.host_instances)."""
    from components.resources.hosts import DEPLOYMENT_TAG, host_filter

    root = deployed.from_outputs(previous_outputs).parameter_root
    hosts = deployed.host_instances(previous_outputs)
    how = host_filter(project, stack, root)
    if how is None:
        return []
    tags = {**how[0], DEPLOYMENT_TAG: root}
    return [ExistingInstance(id=instance_id, instance_type=instance_type, tags={**tags, "HostIndex": str(index)})
            for index, (instance_id, instance_type) in sorted(hosts.items())]


class OfflineMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str, subnet_cidrs: Mapping[str, str] | None = None,
                 previous_outputs: Mapping[str, Any] | None = None,
                 existing_instances: Sequence[ExistingInstance] = (),
                 existing_subnets: Mapping[str, Mapping[str, str]] | None = None,
                 existing_parameters: Sequence[str] | Mapping[str, str] = ()):
        self.region = region
        #: Subnets of an existing VPC, by id: {"cidrBlock", "availabilityZone", "vpcId"} as
        #: DescribeSubnets answers (others: the dedicated subnet's CIDR in the first AZ).
        self.existing_subnets = dict(existing_subnets or {})
        #: The SSM parameters in the account that no resource of the run declares (e.g. the
        #: management server's bootstrap marker, an upgrade's progress record), name -> value
        #: ("offline" when only names are given); offline none unless a caller says so.
        self.existing_parameters = dict(existing_parameters) if isinstance(existing_parameters, Mapping) else \
            dict.fromkeys(existing_parameters, "offline")
        #: EC2 instances running in the account; offline nothing exists unless a caller says so.
        self.existing_instances = tuple(existing_instances)
        #: The stack's outputs after its last update, as a StackReference to itself reads
        #: them under `pulumi up` (None/empty: a stack never deployed).
        self.previous_outputs = dict(previous_outputs or {})
        #: Names of the stacks the program read through a StackReference.
        self.stack_references: list[str] = []
        #: aws, aws-us-gov, aws-cn: ARNs, service principals and AMI owners follow it.
        self.partition = regions.partition_of(region)
        self.subnet_cidrs = dict(subnet_cidrs or {})
        #: The region's AZs, each offering every type (offline, nothing is scarce).
        self.zones = [f"{region}{s}" for s in REGION_AZ_LETTERS.get(region, "abc")]
        self._taken_ips: set[int] = set()
        #: network interface id -> its primary private address
        self._interfaces: dict[str, str] = {}
        self._interface_addresses: dict[str, int] = {}
        #: (token, arguments) of every data-source call the program made.
        self.invokes: list[tuple[str, dict]] = []
        #: Every input AWS (or pulumi-aws's Check) would refuse (components.model.aws_constraints).
        self.violations: list[aws_constraints.Violation] = []
        #: (name, role, policy) of every inline role policy: IAM limits their total per role.
        self.role_policies: list[tuple[str, Any, Any]] = []

    def _private_ip(self, name: str) -> str:
        """An address in the dedicated subnet, the same for the same resource name on every run."""
        subnet = ipaddress.IPv4Network(self.subnet_cidrs.get("cloudstack", "10.0.0.0/24"))
        # EC2 keeps the first four addresses and the last (ipplan.SUBNET_RESERVED_ADDRESSES).
        usable = max(subnet.num_addresses - ipplan.SUBNET_RESERVED_ADDRESSES, 0)
        if len(self._taken_ips) >= usable:
            # EC2 refuses the next ENI with InsufficientFreeAddressesInSubnet; so do we,
            # instead of searching a full subnet forever.
            raise SubnetFullError(
                f"InsufficientFreeAddressesInSubnet: the dedicated subnet {subnet} has no free address left for "
                f"{name} ({usable} usable, all taken): widen cloudstackSubnetCidr or lower hostCount")
        slot = _stable_number(name) % usable
        while slot in self._taken_ips:  # ends: at least one slot is free
            slot = (slot + 1) % usable
        self._taken_ips.add(slot)
        return str(subnet.network_address + 4 + slot)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.violations.extend(aws_constraints.check_inputs(
            args.typ, args.name, args.inputs, partition=self.partition, region=self.region, account=ACCOUNT_ID))
        if args.typ == "aws:iam/rolePolicy:RolePolicy":
            self.role_policies.append((args.name, args.inputs.get("role"), args.inputs.get("policy")))
        n = _stable_number(args.typ + args.name) % 10**9
        state = dict(args.inputs)
        typ = args.typ
        if typ == "pulumi:pulumi:StackReference":
            # The engine's builtin provider answers from the backend's last checkpoint.
            self.stack_references.append(state.get("name", args.name))
            return state.get("name", args.name), {"name": state.get("name", args.name),
                                                  "outputs": dict(self.previous_outputs), "secretOutputNames": []}
        arn = f"arn:{self.partition}:{typ.split(':')[1].split('/')[0]}:{self.region}:{ACCOUNT_ID}:{args.name}"
        state.setdefault("arn", arn)
        return self._created(args, n, state), state

    def _created(self, args: pulumi.runtime.MockResourceArgs, n: int, state: dict) -> str:
        """The id AWS (or the provider) gives the new resource; fills in `state` the
        attributes it computes (addresses, names, ARNs)."""
        typ = args.typ
        rid = f"{args.name}-{n:04d}"
        if typ == "aws:ec2/instance:Instance":
            self._check_cpu_options(args.inputs)
            eni = (args.inputs.get("primaryNetworkInterface") or {}).get("networkInterfaceId")
            if eni:  # launched on an interface of its own: its primary address
                instance_type = args.inputs.get("instanceType", "")
                problem = aws_constraints.interface_address_problem(instance_type, self._interface_addresses[eni])
                if problem:  # RunInstances fails: nothing more of this run is created
                    raise aws_constraints.AwsInputError([aws_constraints.Violation(
                        typ, args.name, "instanceType", instance_type, problem, "EC2 API RunInstances")])
                state.update(private_ip=self._interfaces[eni], primary_network_interface_id=eni)
            else:
                state.update(private_ip=self._private_ip(args.name), primary_network_interface_id=f"eni-{n:017x}")
            rid = f"i-{n:017x}"
        elif typ == upgrade.TYPE:
            # What the provider returns once done (components/registration/upgrade.py): the
            # version every instance runs, and the steps it took to get there.
            state.update(version=args.inputs["to_version"], steps=upgrade.planned_steps(args.inputs))
        elif typ == "aws:ec2/networkInterface:NetworkInterface":
            # CreateNetworkInterface SecondaryPrivateIpAddressCount: EC2 picks that many more
            # free addresses of the subnet; private_ips lists them all, the primary included.
            rid = f"eni-{n:017x}"
            primary = self._private_ip(args.name)
            others = [self._private_ip(f"{args.name}-secondary-{i}")
                      for i in range(int(args.inputs.get("privateIpsCount") or 0))]
            state.update(private_ip=primary, private_ips=[primary, *others])
            self._interfaces[rid] = primary
            self._interface_addresses[rid] = 1 + len(others)
        elif typ == "aws:ec2/eip:Eip":
            # A VPC Elastic IP's id is its allocation id (EC2 AllocateAddress: eipalloc-...).
            rid = f"eipalloc-{n:017x}"
            state.update(public_ip=str(PUBLIC_ADDRESSES.network_address + 1 + n % 253), allocation_id=rid)
        elif typ == "aws:ec2/vpc:Vpc":
            rid = f"vpc-{n:017x}"
            state.update(main_route_table_id=f"rtb-{n + 9000:017x}")
        elif typ == "aws:ec2/subnet:Subnet":
            rid = f"subnet-{n:017x}"
        elif typ == "aws:ec2/routeTable:RouteTable":
            rid = f"rtb-{n:017x}"
        elif typ == "aws:rds/instance:Instance":
            address = f"{args.name}.c0ffee.{self.region}.rds.{regions.dns_suffix(self.partition)}"
            state.update(address=address, port=3306, endpoint=f"{address}:3306")
            if args.inputs.get("manageMasterUserPassword"):
                # RDS creates the master user's secret itself, named rds!db-<uuid> (RDS User
                # Guide, "Password management with Amazon RDS and AWS Secrets Manager").
                secret = f"rds!db-{n:08x}-0000-4000-8000-{n:012x}"
                state["masterUserSecrets"] = [{
                    "secretArn": f"arn:{self.partition}:secretsmanager:{self.region}:{ACCOUNT_ID}:secret:{secret}-Ab12Cd",
                    "secretStatus": "active",
                    "kmsKeyId": args.inputs.get("masterUserSecretKmsKeyId")
                    or f"arn:{self.partition}:kms:{self.region}:{ACCOUNT_ID}:alias/aws/secretsmanager"}]
        elif typ == "aws:efs/fileSystem:FileSystem":
            rid = f"fs-{n:017x}"
            state.update(dns_name=f"{rid}.efs.{self.region}.{regions.dns_suffix(self.partition)}")
        elif typ == "aws:efs/mountTarget:MountTarget":
            state.update(ip_address=self._private_ip(args.name))
        elif typ == "aws:secretsmanager/secret:Secret":
            prefix = state.get("name_prefix") or state.get("namePrefix") or args.name
            state.update(name=f"{prefix}Ab12Cd", arn=f"arn:{self.partition}:secretsmanager:{self.region}:{ACCOUNT_ID}:secret:{prefix}Ab12Cd")
        elif typ == "aws:kms/key:Key":
            # A KMS key id is a UUID; the ARN is arn:<partition>:kms:<region>:<account>:key/<id>.
            rid = f"{n:08x}-0000-4000-8000-{n:012x}"
            state.update(key_id=rid, arn=f"arn:{self.partition}:kms:{self.region}:{ACCOUNT_ID}:key/{rid}")
        elif typ == "aws:ssm/parameter:Parameter":
            state.update(arn=f"arn:{self.partition}:ssm:{self.region}:{ACCOUNT_ID}:parameter{state.get('name', '')}")
        elif typ == "aws:s3/bucket:Bucket":
            # S3 appends a 26-digit unique id to bucket_prefix; bucket ARNs carry no region or account.
            name = state.get("bucket") or f"{state.get('bucketPrefix') or state.get('bucket_prefix') or 'offline-'}" \
                f"{n:026d}"
            rid = name
            state.update(bucket=name, arn=f"arn:{self.partition}:s3:::{name}")
        elif typ == "aws:lb/loadBalancer:LoadBalancer":
            # ELB names an internet-facing load balancer <name>-<id>.<region>.elb.amazonaws.com,
            # in the region's own hosted zone (the alias record's target zone).
            name = f"{state.get('namePrefix') or 'lb-'}{n % 10**7:07d}"
            state.update(name=name, dns_name=f"{name}-{n:010d}.{self.region}.elb.{regions.dns_suffix(self.partition)}",
                         zone_id="Z35SXDOTRQ7X7K",
                         arn=f"arn:{self.partition}:elasticloadbalancing:{self.region}:{ACCOUNT_ID}:"
                             f"loadbalancer/app/{name}/{n:016x}")
        elif typ == "aws:lb/targetGroup:TargetGroup":
            name = f"{state.get('namePrefix') or 'tg-'}{n % 10**7:07d}"
            state.update(name=name, arn=f"arn:{self.partition}:elasticloadbalancing:{self.region}:{ACCOUNT_ID}:"
                                        f"targetgroup/{name}/{n:016x}")
        elif typ == "aws:acm/certificate:Certificate":
            # ACM answers a DNS-validated request with one CNAME per name (ACM User Guide,
            # "DNS validation"): _<hash>.<name> -> _<hash>.<random>.acm-validations.aws.
            rid = f"{n:08x}-0000-4000-8000-{n:012x}"
            domain = state.get("domainName", "")
            state.update(arn=f"arn:{self.partition}:acm:{self.region}:{ACCOUNT_ID}:certificate/{rid}",
                         domainValidationOptions=[{
                             "domainName": domain, "resourceRecordName": f"_{n:032x}.{domain}.",
                             "resourceRecordType": "CNAME",
                             "resourceRecordValue": f"_{n:032x}.offline.acm-validations.aws."}])
        elif typ == "aws:route53/record:Record":
            state.update(fqdn=str(state.get("name", "")).rstrip("."))
        elif typ == "random:index/randomId:RandomId":
            state.update(hex=f"{n:08x}")
        elif typ in AUTO_NAMED and not state.get("name"):
            # AWS names these itself (resource name + a suffix) when the program gives none.
            state["name"] = f"{args.name}-{n % 10**7:07d}"
        elif typ.startswith("aws:iam/"):
            state.setdefault("name", args.name)
            state.update(arn=f"arn:{self.partition}:iam::{ACCOUNT_ID}:{typ.split(':')[-1].lower()}/{args.name}")
        return rid

    @staticmethod
    def _check_cpu_options(inputs: Mapping[str, Any]) -> None:
        """RunInstances refuses NestedVirtualization=enabled on a type whose processor does not
        support it (EC2 API reference, CpuOptionsRequest: "supported only on 8th generation
        Intel-based instance types"; ProcessorInfo.SupportedFeatures says which)."""
        nested = (inputs.get("cpuOptions") or {}).get("nestedVirtualization")
        if nested not in (None, "enabled", "disabled"):
            raise Exception(f"InvalidParameterValue: NestedVirtualization {nested!r}: valid values are enabled, disabled")
        facts = catalog.instance_facts(inputs.get("instanceType", ""))
        if nested == "enabled" and (facts is None or not facts.nested_virtualization):
            raise Exception(f"Unsupported: nested virtualization is not supported for instance type "
                            f"{inputs.get('instanceType')}")

    def _instances(self, a: Mapping[str, Any]) -> list[ExistingInstance]:
        """DescribeInstances with the aws_instances data source's filters: every tag must match;
        the states default to running only (terraform-provider-aws, data source aws_instances)."""
        states = list(a.get("instanceStateNames") or ["running"])
        tags = dict(a.get("instanceTags") or {})
        return [i for i in self.existing_instances
                if i.state in states and all(i.tags.get(k) == v for k, v in tags.items())]

    def call(self, args: pulumi.runtime.MockCallArgs):
        token = args.token
        a = args.args
        self.invokes.append((token, dict(a)))
        if token == "aws:ec2/getInstanceTypes:getInstanceTypes":
            # Offline there is no list of the region's types: a type missing from the
            # table is not refused (AWS decides at preview) but reported as unknown.
            wanted = [v for f in a.get("filters", []) if f["name"] == "instance-type" for v in f["values"]]
            return {"instanceTypes": wanted, "id": self.region}
        if token == "aws:ec2/getInstanceType:getInstanceType":
            return _instance_type(a["instanceType"])
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = list(self.zones)
            return {"names": names, "zoneIds": [f"use1-az{i}" for i in range(1, len(names) + 1)], "id": self.region}
        if token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            wanted = [v for f in a.get("filters", []) if f["name"] == "instance-type" for v in f["values"]]
            pairs = [(t, z) for t in wanted for z in self.zones]
            return {"instanceTypes": [t for t, _ in pairs], "locations": [z for _, z in pairs],
                    "locationTypes": ["availability-zone"] * len(pairs), "id": self.region}
        if token == "aws:ec2/getInstances:getInstances":
            found = self._instances(a)
            return {"ids": [i.id for i in found], "privateIps": [], "publicIps": [], "ipv6Addresses": [],
                    "id": self.region}
        if token == "aws:ec2/getInstance:getInstance":
            match = [i for i in self.existing_instances if i.id == a.get("instanceId")]
            if not match:
                # aws_instance data source: an error, not an empty answer.
                raise Exception(f"no matching EC2 Instance found ({a.get('instanceId')})")
            i = match[0]
            return {"id": i.id, "instanceId": i.id, "instanceType": i.instance_type, "tags": dict(i.tags),
                    "instanceState": i.state}
        if token == "aws:ec2/getAmi:getAmi":
            # Canonical publishes from another account in each partition: asking for the
            # commercial owner in GovCloud or China finds nothing, and AWS's data source
            # then fails ("Your query returned no results").
            canonical = regions.canonical_ami_owner(self.partition)
            if canonical not in (a.get("owners") or []):
                raise Exception(f"aws:ec2/getAmi: your query returned no results (owners {a.get('owners')} "
                                f"publish no matching AMI in {self.region}; Canonical is {canonical} there)")
            return {"id": "ami-0offline00000000", "imageId": "ami-0offline00000000", "name": "offline ubuntu"}
        if token == "aws:ssm/getParametersByPath:getParametersByPath":
            # GetParametersByPath: the parameters directly under the path (not recursive, the
            # data source's default), an empty answer when there is none.
            path = a["path"].rstrip("/") + "/"
            names = [n for n in self.existing_parameters if n.startswith(path) and "/" not in n[len(path):]]
            return {"id": a["path"], "path": a["path"], "names": names, "types": ["String"] * len(names),
                    "values": [self.existing_parameters[n] for n in names], "arns": [],
                    "withDecryption": a.get("withDecryption")}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:{self.partition}:iam::{ACCOUNT_ID}:user/offline", "userId": "OFFLINE"}
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": self.partition, "dnsSuffix": regions.dns_suffix(self.partition),
                    "id": self.partition}
        if token == "aws:index/getServicePrincipal:getServicePrincipal":
            name = regions.service_principal(a["serviceName"], self.partition)
            return {"name": name, "serviceName": a["serviceName"], "region": self.region,
                    "suffix": name.split(".", 1)[1], "id": name}
        if token == "aws:ec2/getPrefixList:getPrefixList":
            # Stand-ins from the documentation ranges (RFC 5737): the real lists are AWS's.
            name = a.get("name", "")
            cidrs = ["198.51.100.0/25"] if name.endswith(".s3") else ["203.0.113.0/25"]
            return {"id": f"pl-{_stable_number(name) % 10**8:08x}", "name": name, "cidrBlocks": cidrs}
        if token == "aws:ec2/getRouteTable:getRouteTable":
            # An existing table as the data source shows it: local and propagated routes left out.
            return {"id": a.get("routeTableId"), "routeTableId": a.get("routeTableId"), "routes": [],
                    "associations": [], "tags": {}}
        if token == "aws:ec2/getSubnet:getSubnet" and a.get("id") in self.existing_subnets:
            return {"id": a.get("id"), **self.existing_subnets[a["id"]]}
        if token == "aws:ec2/getSubnet:getSubnet":
            return {"id": a.get("id"), "cidrBlock": self.subnet_cidrs.get("cloudstack"), "vpcId": a.get("vpcId", ""),
                    "availabilityZone": self.zones[0]}
        raise Exception(f"the offline mocks do not answer {token}")


def _instance_type(instance_type: str) -> dict:
    """getInstanceType's answer from the local catalog (an unknown type: no facts, and the
    hypervisor the settings report as unknown offline)."""
    facts = catalog.instance_facts(instance_type)
    addresses = aws_constraints.IPV4_ADDRESSES_PER_INTERFACE.get(instance_type)
    if facts is None:
        return {"instanceType": instance_type, "hypervisor": UNKNOWN_OFFLINE_HYPERVISOR,
                "bareMetal": False, "supportedArchitectures": [], "defaultVcpus": 0, "memorySize": 0,
                "maximumIpv4AddressesPerInterface": addresses}
    return {
        "instanceType": facts.instance_type, "hypervisor": facts.hypervisor, "bareMetal": facts.bare_metal,
        "supportedArchitectures": list(facts.architectures), "defaultVcpus": facts.vcpus,
        "memorySize": facts.memory_mib, "supportedCpuFeatures": list(facts.processor_features),
        "maximumIpv4AddressesPerInterface": addresses,
    }


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Keeps each registration's parent and dependencies (the plain monitor drops them)."""

    def __init__(self, mocks: OfflineMocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def Invoke(self, request):  # noqa: N802 - gRPC method name
        try:
            return super().Invoke(request)
        finally:
            if threading.current_thread() is not threading.main_thread():
                # pulumi's MockMonitor.Invoke makes an event loop on the executor thread
                # that runs it and never closes it; collected later, it prints an ignored
                # "Invalid file descriptor: -1" traceback. Close it; the next invoke on this
                # thread makes a fresh one.
                loop = asyncio.get_event_loop_policy().get_event_loop()
                if not loop.is_running() and not loop.is_closed():
                    loop.close()
                asyncio.set_event_loop(None)

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            state = self.resources[response.urn].state if response.urn in self.resources else {}
            inputs = pulumi.runtime.rpc.deserialize_properties(request.object)
            self.registrations.append(Registration(
                urn=response.urn, type=request.type, name=request.name, inputs=dict(inputs),
                custom=bool(request.custom), id=response.id, state=dict(state or {}),
                parent_urn=request.parent, dependencies=tuple(request.dependencies),
                protect=bool(request.protect), ignore_changes=tuple(request.ignoreChanges),
                replace_on_changes=tuple(request.replaceOnChanges),
                delete_before_replace=bool(request.deleteBeforeReplace),
                additional_secret_outputs=tuple(request.additionalSecretOutputs),
                custom_timeouts=(request.customTimeouts.create, request.customTimeouts.update,
                                 request.customTimeouts.delete)))
        return response


@dataclass
class OfflineRun:
    registrations: list[Registration]
    outputs: dict[str, Any]
    result: Any = None
    warnings: list[str] = field(default_factory=list)
    invokes: list[tuple[str, dict]] = field(default_factory=list)
    stack_references: list[str] = field(default_factory=list)

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def named(self, name: str) -> Registration:
        matches = [r for r in self.registrations if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)


class _WarningCollector(pulumi_mocks.MockEngine):
    def __init__(self, sink: list[str]):
        super().__init__(None)
        self.sink = sink

    def Log(self, request):  # noqa: N802 - gRPC method name
        if request.severity == engine_pb2.WARNING:  # the plan prints it once; the mock engine would log it again
            self.sink.append(request.message)
            return None
        return super().Log(request)


def load_balancer_subnet_stand_ins(config: Mapping[str, Any], region: str) -> dict[str, dict[str, str]]:
    """With an existing VPC, what the offline account answers for the load balancer's subnets
    (uiSubnetIds): subnets of that VPC in the region's first two AZs, with CIDRs carved from
    vpcCidr as a new VPC would get them. Offline nothing exists: these stand in for the
    subnets AWS describes under `pulumi up`, so the rest of the plan can be shown."""
    def value(key: str, default: Any) -> Any:
        raw = config.get(f"cloudstack-ec2:{key}", default)
        try:
            return json.loads(raw) if isinstance(raw, str) and raw.startswith("[") else raw
        except json.JSONDecodeError:
            return raw   # the settings refuse it, naming the key

    ids, vpc_id = value("uiSubnetIds", []), value("vpcId", "")
    # Malformed values get no stand-ins: the settings refuse them before anything is planned.
    if not ids or not vpc_id or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) \
            or not isinstance(vpc_id, str):
        return {}
    try:
        vpc = str(value("vpcCidr", "10.0.0.0/16"))
        cidrs = ipplan.carve_load_balancer_subnets(vpc, [str(value("cloudstackSubnetCidr", "10.0.0.0/24"))])
    except ValueError:
        return {}
    zones = [f"{region}{s}" for s in REGION_AZ_LETTERS.get(region, "abc")]
    return {subnet_id: {"cidrBlock": str(cidrs[i % 2]), "availabilityZone": zones[i % len(zones)], "vpcId": vpc_id}
            for i, subnet_id in enumerate(ids)}


class DuplicateUrnError(RuntimeError):
    """The program declared two resources of one URN (type, name and parent chain)."""


def check_unique_urns(registrations: Sequence[Registration]) -> None:
    """Raise DuplicateUrnError naming each URN declared more than once: the Pulumi engine
    stops such a program ("Duplicate resource URN '<urn>'; try giving it a unique name",
    pulumi/pulumi pkg/diag/errors.go), which the mocks alone do not."""
    seen: set[str] = set()
    repeated = [r.urn for r in registrations if r.urn in seen or seen.add(r.urn)]
    if repeated:
        raise DuplicateUrnError("; ".join(f"Duplicate resource URN '{urn}'; try giving it a unique name"
                                          for urn in dict.fromkeys(repeated)))


def run_offline(
    program: Callable[[], Any],
    config: Mapping[str, Any],
    *,
    project: str,
    stack: str,
    region: str,
    subnet_cidrs: Optional[Mapping[str, str]] = None,
    previous_outputs: Optional[Mapping[str, Any]] = None,
    existing_instances: Sequence[ExistingInstance] = (),
    secret_keys: Sequence[str] = (),
    existing_subnets: Optional[Mapping[str, Mapping[str, str]]] = None,
    existing_parameters: Sequence[str] | Mapping[str, str] = (),
) -> OfflineRun:
    """Run `program` under mocks with `config` ({"project:key": value}); return what it declared.

    `program` returns an object with an `outputs` dict (Outputs allowed), which comes
    back resolved in `OfflineRun.outputs`; the object itself is `OfflineRun.result`.
    `previous_outputs` are the stack's outputs after its last update (a later run of a
    deployed stack); without them the run is a first deployment.
    `existing_instances`: EC2 instances already running in the mocked account (an earlier
    deployment's hosts, say); offline, by default, nothing exists. `secret_keys`: the keys of
    `config` the stack holds as secrets (`pulumi config set --secret`).
    Exceptions of the program (SettingsError, ...) propagate; inputs AWS would refuse
    raise AwsInputError (components.model.aws_constraints) naming each resource and input.
    """
    if existing_subnets is None:
        existing_subnets = load_balancer_subnet_stand_ins(config, region)
    mocks = OfflineMocks(region, subnet_cidrs, previous_outputs, existing_instances, existing_subnets,
                         existing_parameters)
    monitor = RecordingMonitor(mocks)
    warnings: list[str] = []
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    engine = _WarningCollector(warnings)
    runtime_settings.SETTINGS.engine = engine
    pulumi.runtime.set_all_config({k: _config_text(v) for k, v in config.items()}, list(secret_keys))
    runtime_settings.SETTINGS.rpc_manager.clear()
    runtime_settings.SETTINGS.outputs.clear()

    resolved: dict[str, Any] = {}
    results: list[Any] = []

    def body():
        result = program()
        results.append(result)
        return pulumi.Output.from_input(result.outputs).apply(resolved.update)

    # pulumi.dynamic's serialize_provider wraps pickle's _batch_setitems on EVERY call and
    # never restores it (sdk/python/lib/pulumi/dynamic/dynamic.py): in one process the
    # wrappers chain up until pickling a provider exceeds the recursion limit. `pulumi up`
    # runs the program once per process; so does this runner, as far as pickle is concerned.
    saved = (pickle._Pickler._batch_setitems, pickle._Pickler.save_dict)  # type: ignore[attr-defined]
    try:
        _sync_await(pulumi.runtime.stack.run_pulumi_func(
            lambda: _sync_await(pulumi.Output.from_input(body()).future())))
    finally:
        pickle._Pickler._batch_setitems, pickle._Pickler.save_dict = saved  # type: ignore[attr-defined]
    check_unique_urns(monitor.registrations)
    mocks.violations.extend(aws_constraints.check_role_inline_policies(mocks.role_policies))
    if mocks.violations:
        # Where `pulumi up` would stop at preview, with nothing created.
        raise aws_constraints.AwsInputError(mocks.violations)
    return OfflineRun(registrations=monitor.registrations, outputs=resolved, result=results[0],
                      warnings=warnings, invokes=mocks.invokes, stack_references=mocks.stack_references)


def _config_text(value: Any) -> str:
    """Pulumi hands config to programs as strings; structured values as JSON."""
    import json

    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
