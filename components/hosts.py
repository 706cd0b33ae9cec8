"""KvmHostPool: the instances (metal, or virtual with nested virtualization) that run CloudStack's KVM agent, one per host index."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import pulumi
import pulumi_aws as aws

from components import naming
from components.node import (Grant, InstanceSpec, NodeArgs, hardened_instance, instance_role, minutes_timeouts,
                             parameter_arn)


#: The Role tag of every KVM host instance (with Project, Stack and HostIndex).
HOST_ROLE = "cloudstack-kvm-host"
#: Instance states in which a host instance still exists (and keeps its type).
LIVE_STATES = ("pending", "running", "stopping", "stopped")


def existing_host_types(project: str, stack: str) -> dict[int, str]:
    """host index -> instance type of the stack's KVM host instances that exist now, as
    AWS reports them (DescribeInstances by the hosts' tags). Hosts keep the type they
    were created with, whatever `hostInstanceType` says today; this is how the program
    knows them, under `pulumi up` and `preview` alike (offline: the mocks' instances).
    Raises SettingsError when two live instances claim one host index with different types."""
    from components.settings import Problem, SettingsError

    found = aws.ec2.get_instances(
        instance_tags={"Project": project, "Stack": stack, "Role": HOST_ROLE},
        instance_state_names=list(LIVE_STATES))
    types: dict[int, str] = {}
    owners: dict[int, str] = {}
    for instance_id in sorted(found.ids or []):
        instance = aws.ec2.get_instance(instance_id=instance_id)
        text = (instance.tags or {}).get("HostIndex", "")
        if not text.isdigit():
            continue
        index = int(text)
        if index in types and types[index] != instance.instance_type:
            raise SettingsError([Problem(
                "hostInstanceType", instance.instance_type,
                f"instances {owners[index]} ({types[index]}) and {instance_id} ({instance.instance_type}) both carry "
                f"HostIndex={index} in stack {stack}: terminate the one Pulumi does not manage, then re-run")])
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
    tags: dict = field(default_factory=dict)
    #: Create/update/delete timeout: metal instances can take more than 20 minutes to
    #: start (or stop), and the provider gives up after 10 by default.
    timeout_minutes: int = 60
    #: Root of the deployment's SSM parameters (naming.parameter_root); None: `/cloudstack-ec2/<stack>`.
    parameter_root: Optional[pulumi.Input[str]] = None
    #: host index -> its own InstanceSpec where it differs from `instance` (an existing
    #: host keeps its instance type, and with it its CPU options; components.hosttypes).
    host_instances: Mapping[int, InstanceSpec] = field(default_factory=dict)


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
        profile = instance_role(name, grants=[Grant(["ssm:GetParameter"], [
            parameter_arn(root, naming.PARAM_MANAGEMENT_SSH_KEY),
            parameter_arn(root, naming.PARAM_CLOUDSTACK_VERSION)]),
            # the boot script's last step: <root>/host-ready/<overlay ip> (the registration waits for it)
            Grant(["ssm:PutParameter"], [parameter_arn(root, f"{naming.HOST_READY}/{ip}")
                                         for _, ip in sorted(args.overlay_ips.items())]),
            Grant(["s3:GetObject"], [args.boot_script_arn])],
            opts=child, tags=tags)

        self.instances: dict[int, aws.ec2.Instance] = {}
        for index, overlay_ip in sorted(args.overlay_ips.items()):
            self.instances[index] = hardened_instance(f"{name}-{index}", NodeArgs(
                spec=args.host_instances.get(index, args.instance), user_data_base64=args.render_user_data(index),
                instance_profile=profile.name, pin_instance_type=True,
                custom_timeouts=minutes_timeouts(args.timeout_minutes),
                tags={**tags, "Role": HOST_ROLE, "HostIndex": str(index), "OverlayIp": overlay_ip}),
                child)

        self.hosts = {
            str(index): {"instance_id": inst.id, "private_ip": inst.private_ip, "overlay_ip": args.overlay_ips[index]}
            for index, inst in self.instances.items()
        }
        self.register_outputs({"hosts": self.hosts})
