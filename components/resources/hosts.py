"""KvmHostPool: the instances (metal, or virtual with nested virtualization) that run CloudStack's KVM agent, one per host index."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Collection, Mapping, Optional

import pulumi
import pulumi_aws as aws

from components.model import naming
from components.resources.anchor import reader_grant
from components.resources.node import (Grant, InstanceSpec, NodeArgs, hardened_instance, instance_role, minutes_timeouts,
                             parameter_arn)


#: The Role tag of every KVM host instance (with Project, Stack, Deployment and HostIndex).
HOST_ROLE = "cloudstack-kvm-host"
#: The tag that tells deployments of one stack name apart: the deployment's SSM parameter
#: root (naming.parameter_root), unique per deployment in an account and region.
DEPLOYMENT_TAG = "Deployment"
#: Instance states in which a host instance still exists (and keeps its type).
LIVE_STATES = ("pending", "running", "stopping", "stopped")


def host_filter(project: str, stack: str, parameter_root: str) -> Optional[tuple[dict[str, str], bool]]:
    """How to find this deployment's KVM host instances: (tags every one carries, whether
    instances without a Deployment tag are ours too), or None: nothing to look up.

    - no root (the stack's first run): no host of this deployment exists yet; any host of
      the stack name belongs to another deployment;
    - the legacy root `/cloudstack-ec2/<stack>` (deployed before the deployment id): its
      hosts were created without the tag (they get it on this run), and a deployment with
      a random root tags every host, so untagged hosts and hosts tagged with this root are
      ours;
    - a random root: hosts tagged with it."""
    if not parameter_root:
        return None
    tags = {"Project": project, "Stack": stack, "Role": HOST_ROLE}
    if parameter_root == naming.stack_prefix(stack):
        return tags, True
    return {**tags, DEPLOYMENT_TAG: parameter_root}, False


def existing_host_types(project: str, stack: str, parameter_root: str) -> dict[int, str]:
    """host index -> instance type of this deployment's KVM host instances that exist now,
    as AWS reports them (DescribeInstances by the hosts' tags, host_filter; `parameter_root`
    is the previous run's, "" on the first run). Hosts keep the type they were created
    with, whatever `hostInstanceType` says today; this is how the program knows them, under
    `pulumi up` and `preview` alike (offline: the mocks' instances). Hosts of another
    deployment with the same stack name (another person's local backend, a stack re-created
    after `pulumi stack rm`: their `Deployment` tag differs) are not ours.
    Raises SettingsError when two live instances claim one host index with different types."""
    from components.model.settings import Problem, SettingsError

    how = host_filter(project, stack, parameter_root)
    if how is None:
        return {}
    tags, untagged_too = how
    found = aws.ec2.get_instances(instance_tags=tags, instance_state_names=list(LIVE_STATES))
    types: dict[int, str] = {}
    owners: dict[int, str] = {}
    for instance_id in sorted(found.ids or []):
        instance = aws.ec2.get_instance(instance_id=instance_id)
        instance_tags = instance.tags or {}
        if instance_tags.get(DEPLOYMENT_TAG, parameter_root if untagged_too else None) != parameter_root:
            continue   # another deployment's host
        text = instance_tags.get("HostIndex", "")
        if not text.isdigit():
            continue
        index = int(text)
        if index in types and types[index] != instance.instance_type:
            raise SettingsError([Problem(
                "hostInstanceType", instance.instance_type,
                f"instances {owners[index]} ({types[index]}) and {instance_id} ({instance.instance_type}) both carry "
                f"HostIndex={index} in deployment {parameter_root} of stack {stack}: terminate the one Pulumi does "
                f"not manage, then re-run")])
        types[index], owners[index] = instance.instance_type, instance_id
    return types


@dataclass(frozen=True)
class KvmHostPoolArgs:
    stack: str
    instance: InstanceSpec
    #: host index -> its stable overlay address (from the IP plan).
    overlay_ips: Mapping[int, str]
    #: host index -> boot script (base64 user data).
    render_user_data: Callable[[int], pulumi.Input[str]]
    #: ARN of the KVM host script object in the boot-script bucket (BootScriptBucket.object_arn).
    boot_script_arn: pulumi.Input[str]
    #: The management server's anchor key (ManagementServer.anchor_key_arn): the hosts may
    #: Decrypt with it, and render_user_data puts it in their boot.env.
    anchor_key_arn: pulumi.Input[str]
    tags: dict = field(default_factory=dict)
    #: Create/update/delete timeout: metal instances can take more than 20 minutes to
    #: start (or stop), and the provider gives up after 10 by default.
    timeout_minutes: int = 60
    #: Root of the deployment's SSM parameters (naming.parameter_root); None: `/cloudstack-ec2/<stack>`.
    parameter_root: Optional[pulumi.Input[str]] = None
    #: host index -> its own InstanceSpec where it differs from `instance` (an existing
    #: host keeps its instance type, and with it its CPU options; components.model.hosttypes).
    host_instances: Mapping[int, InstanceSpec] = field(default_factory=dict)
    #: BootScriptBucket.packages_arn: the agent's packages the first management server keeps,
    #: read-only (s3:GetObject). None: no copy; hosts install from upstream.
    packages_arn: Optional[pulumi.Input[str]] = None
    #: Host indices replaced in this update when their user data differs from the recorded one
    #: (the renewInstances setting; NodeArgs.renew_user_data). Their VMs stop with them unless
    #: the hosts are in maintenance.
    renew: Collection[int] = ()


def _waiting_for(spec: InstanceSpec, resource: pulumi.Resource) -> InstanceSpec:
    return dataclasses.replace(spec, wait_for=[*spec.wait_for, resource])


class KvmHostPool(pulumi.ComponentResource):
    """`hostCount` KVM host instances. Each is named by its host INDEX (`<name>-<i>`), never by
    its position in some other list, so changing hostCount adds or removes only the hosts
    above the old or new count; host i keeps its instance and its overlay address.

    Outputs: hosts — {index: {"instance_id", "private_ip", "overlay_ip"}}.
    """

    def __init__(self, name: str, args: KvmHostPoolArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:KvmHostPool", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        root = args.parameter_root if args.parameter_root is not None else naming.stack_prefix(args.stack)
        # The hosts need nothing but the management server's public key (the key it
        # adds them with) and its package version; no secret is readable from a KVM host.
        # GetParameterHistory, not GetParameter: it reports the KMS key each version is
        # under, which is how a host knows the management server wrote it (anchor.py).
        role = instance_role(name, grants=[Grant(["ssm:GetParameterHistory"], [
            parameter_arn(root, naming.PARAM_MANAGEMENT_SSH_KEY),
            parameter_arn(root, naming.PARAM_CLOUDSTACK_VERSION)]),
            # The boot script's last step: <root>/host-ready/<overlay ip> (the registration
            # waits for it). One wildcard, not one ARN per host: the hosts share this role, so
            # per-host ARNs granted nothing more narrow, and they grew the inline policy past
            # IAM's 10,240 characters at ~98 hosts (aws_constraints.IAM_DOCUMENT_LIMITS).
            Grant(["ssm:PutParameter"], [parameter_arn(root, f"{naming.HOST_READY}/*")]),
            # Its script and the agent's packages the first management server keeps.
            Grant(["s3:GetObject"], [args.boot_script_arn,
                                     *([args.packages_arn] if args.packages_arn is not None else [])]),
            *args.instance.role_grants],
            opts=child, tags=tags)
        profile = role.profile
        # Decrypt only, through a grant (the key is the management server's; anchor.py).
        # The hosts launch after it: they read the key's values at once.
        grant = reader_grant(name, args.anchor_key_arn, role.role, child)

        self.instances: dict[int, aws.ec2.Instance] = {}
        for index, overlay_ip in sorted(args.overlay_ips.items()):
            self.instances[index] = hardened_instance(f"{name}-{index}", NodeArgs(
                spec=_waiting_for(args.host_instances.get(index, args.instance), grant),
                user_data_base64=args.render_user_data(index),
                instance_profile=profile.name, pin_instance_type=True, renew_user_data=index in args.renew,
                custom_timeouts=minutes_timeouts(args.timeout_minutes),
                tags={**tags, "Role": HOST_ROLE, DEPLOYMENT_TAG: root, "HostIndex": str(index),
                      "OverlayIp": overlay_ip}),
                child)

        self.hosts = {
            str(index): {"instance_id": inst.id, "private_ip": inst.private_ip, "overlay_ip": args.overlay_ips[index]}
            for index, inst in self.instances.items()
        }
        self.register_outputs({"hosts": self.hosts})
