"""What every CloudStack instance shares: hardened EC2 settings and a least-privilege instance role.

Used by OverlayRouter, ManagementServer and KvmHostPool so the rules live in one place:
IMDSv2 required, encrypted gp3 root volume, no key pair (administration through SSM
Session Manager), AMI and user data pinned after creation (a newer AMI or a changed
boot script must never replace or reboot a running KVM host behind the user's back).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.model import naming

#: What the SSM agent needs for Session Manager, and nothing more. AWS's managed
#: AmazonSSMManagedInstanceCore would also let every instance read every SSM
#: parameter of the account (ssm:GetParameter on "*"). These actions take no
#: resource-level restriction, hence "*".
SESSION_MANAGER_ACTIONS = (
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
)
#: No instance may attach a parameter policy to a parameter it may write: an Expiration
#: policy has Parameter Store delete the parameter later (AWS Systems Manager User Guide,
#: "Assigning parameter policies"), which would undo what a role may otherwise only
#: overwrite (the bootstrap marker the program reads, the anchors the hosts trust, another
#: host's readiness). No boot script sets one. `ssm:Policies` is Parameter Store's condition
#: key for that (User Guide, "Preventing access to Parameter Store API operations").
NO_PARAMETER_POLICIES = {"Effect": "Deny", "Action": "ssm:PutParameter", "Resource": "*",
                         "Condition": {"StringEquals": {"ssm:Policies": "true"}}}


@dataclass(frozen=True)
class InstanceSpec:
    """Where and as what an instance runs: the part the three instance components share."""

    instance_type: str
    ami_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    security_group_ids: Sequence[pulumi.Input[str]]
    root_volume_gb: int
    #: Resources the instance must not boot before (the multicast domain association:
    #: without it the overlay cannot find the router, the members' only way out).
    wait_for: Sequence[pulumi.Resource] = ()
    #: Launch with the CPU option NestedVirtualization=enabled (KVM hosts on a virtual
    #: type whose processor supports it; EC2 refuses it on any other type).
    nested_virtualization: bool = False
    #: What the instance role may do besides its component's own grants (Grant below): its
    #: CloudWatch log group, agent configuration and metrics (components/resources/monitoring.py).
    role_grants: Sequence["Grant"] = ()


@dataclass(frozen=True)
class NodeArgs:
    spec: InstanceSpec
    user_data_base64: pulumi.Input[str]
    instance_profile: pulumi.Input[str]
    source_dest_check: bool = True
    #: Keep the instance type once created: changing it stops and starts the instance,
    #: which on a KVM host kills its VMs without maintenance.
    pin_instance_type: bool = False
    #: Where the provider's defaults (10 minutes to create) are too short: metal instances.
    custom_timeouts: Optional[pulumi.CustomTimeouts] = None
    tags: dict = field(default_factory=dict)
    #: Launch on this network interface (its subnet, groups and source/destination check
    #: then come from the interface: EC2 refuses them beside it) instead of a new one.
    network_interface_id: Optional[pulumi.Input[str]] = None
    #: Replace the instance so that it boots with `user_data_base64` (this update only), when
    #: that differs from the recorded user data (replace_on_changes; equal: nothing happens).
    #: Otherwise a changed user data changes nothing: ignore_changes keeps the state's value,
    #: which the engine uses even for a replacement (`pulumi up --replace` would launch the
    #: old user data again: Pulumi docs, "ignoreChanges": "Pulumi ignores a property by using
    #: the old value from the state"), and an update in place would stop and start the
    #: instance (pulumi-aws Instance, user_data_replace_on_change).
    renew_user_data: bool = False


def hardened_instance(name: str, args: NodeArgs, opts: pulumi.ResourceOptions) -> aws.ec2.Instance:
    return aws.ec2.Instance(
        name,
        ami=args.spec.ami_id,
        instance_type=args.spec.instance_type,
        iam_instance_profile=args.instance_profile,
        user_data_base64=args.user_data_base64,
        **({"primary_network_interface": aws.ec2.InstancePrimaryNetworkInterfaceArgs(
            network_interface_id=args.network_interface_id)} if args.network_interface_id is not None else {
            "subnet_id": args.spec.subnet_id, "vpc_security_group_ids": list(args.spec.security_group_ids),
            "source_dest_check": args.source_dest_check, "associate_public_ip_address": False}),
        metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
            http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1,
            instance_metadata_tags="disabled"),
        cpu_options=(aws.ec2.InstanceCpuOptionsArgs(nested_virtualization="enabled")
                     if args.spec.nested_virtualization else None),
        root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
            encrypted=True, volume_type="gp3", volume_size=args.spec.root_volume_gb, delete_on_termination=True),
        tags={**args.tags, "Name": name},
        volume_tags={**args.tags, "Name": name},
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            ignore_changes=["ami", "user_data"] + ([] if args.renew_user_data else ["user_data_base64"])
            + (["instance_type"] if args.pin_instance_type else []),
            replace_on_changes=["user_data_base64"] if args.renew_user_data else None,
            # The replacement reuses the overlay address: two live copies would fight
            # over it (and two management servers over one database).
            delete_before_replace=True,
            custom_timeouts=args.custom_timeouts,
            depends_on=list(args.spec.wait_for))),
    )


def minutes_timeouts(minutes: int) -> pulumi.CustomTimeouts:
    """The same create, update and delete timeout (Pulumi's duration strings)."""
    return pulumi.CustomTimeouts(create=f"{minutes}m", update=f"{minutes}m", delete=f"{minutes}m")


def parameter_arn(root: pulumi.Input[str], which: str) -> pulumi.Output[str]:
    """ARN of one of the deployment's SSM parameters (`root` from naming.parameter_root),
    known before the parameter exists (so a role can name a parameter another component
    creates later)."""
    partition = aws.get_partition().partition
    region = aws.get_region().region
    account = aws.get_caller_identity().account_id
    return pulumi.Output.from_input(root).apply(
        lambda r: f"arn:{partition}:ssm:{region}:{account}:parameter{naming.parameter_under(r, which)}")


def parameter_name(root: pulumi.Input[str], which: str) -> pulumi.Output[str]:
    """The name of one of the deployment's SSM parameters under `root`."""
    return pulumi.Output.from_input(root).apply(lambda r: naming.parameter_under(r, which))


def ec2_arn(resource_type: str, resource_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """arn:<partition>:ec2:<region>:<account>:<resource_type>/<id> (Service Authorization
    Reference, "Resource types defined by Amazon EC2": route-table, elastic-ip,
    network-interface, instance ...), in this stack's region and account."""
    partition = aws.get_partition().partition
    region = aws.get_region().region
    account = aws.get_caller_identity().account_id
    return pulumi.Output.from_input(resource_id).apply(
        lambda i: f"arn:{partition}:ec2:{region}:{account}:{resource_type}/{i}")


@dataclass(frozen=True)
class Grant:
    """One IAM statement: these actions on these resources (ARNs, possibly Outputs), under
    `conditions` (an IAM Condition block, e.g. {"StringEquals": {"aws:RequestedRegion": ...}})
    when given."""

    actions: Sequence[str]
    resources: Sequence[pulumi.Input[str]]
    conditions: Optional[dict] = None


@dataclass(frozen=True)
class InstanceRole:
    """An instance role and the profile instances launch with (`profile.name`)."""

    role: aws.iam.Role
    profile: aws.iam.InstanceProfile


def policy_document(grants: Sequence[Grant]) -> pulumi.Output[str]:
    """The JSON of an IAM policy allowing exactly `grants` (one statement each, with its
    conditions when it has any)."""
    statements = [
        pulumi.Output.all(*g.resources).apply(
            lambda arns, actions=tuple(g.actions), conditions=g.conditions: {
                "Effect": "Allow", "Action": list(actions), "Resource": list(arns),
                **({"Condition": conditions} if conditions else {})})
        for g in grants
    ]
    return pulumi.Output.all(*statements).apply(lambda s: json.dumps({"Version": "2012-10-17", "Statement": list(s)}))


def instance_role(name: str, grants: Sequence[Grant], opts: pulumi.ResourceOptions,
                  tags: Optional[dict] = None) -> InstanceRole:
    """A role for one kind of instance: SSM Session Manager plus exactly `grants`, and never
    a parameter policy (NO_PARAMETER_POLICIES, beside Session Manager's statement).

    The trust policy names the EC2 service and carries no condition. AWS documents the
    confused-deputy keys aws:SourceAccount and aws:SourceArn per service (IAM User Guide,
    "The confused deputy problem"; the services' own "Cross-service confused deputy
    prevention" pages), and for EC2 it documents none: the trust policy of "IAM roles for
    Amazon EC2" (Amazon EC2 User Guide) is the bare service principal. A condition on a key
    missing from the request context does not match (IAM User Guide, "Condition element":
    a key that is not present evaluates to false), so such a condition would leave every
    instance without credentials. Who may put the role on an instance is decided by
    iam:PassRole instead (a role cannot be passed to another account's instance)."""
    role = aws.iam.Role(
        f"{name}-role",
        assume_role_policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                           # ec2.amazonaws.com.cn in China: the provider knows each partition's name.
                           "Principal": {"Service": aws.get_service_principal(service_name="ec2").name}}],
        }),
        tags=tags or {}, opts=opts)
    permissions = [aws.iam.RolePolicy(
        f"{name}-session-manager", role=role.id,
        policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": list(SESSION_MANAGER_ACTIONS), "Resource": "*"},
            NO_PARAMETER_POLICIES]}),
        opts=opts)]
    if grants:
        permissions.append(aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=policy_document(grants),
                                              opts=opts))
    # The profile (and so the instance) waits for the role's permissions: boot scripts
    # read their secrets and parameters at once, and an instance launched before its
    # policy exists would start with AccessDenied.
    return InstanceRole(role, aws.iam.InstanceProfile(
        f"{name}-profile", role=role.name, tags=tags or {},
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=permissions))))
