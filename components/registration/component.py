"""CloudStackRegistration: one dynamic resource per CloudStack object, children of one component."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi

from .plan import Deferred, PlannedResource, Ref, plan_registration, with_console_parameter
from .provider import RESOURCE_CLASSES
from .spec import RegistrationSpec


@dataclass(frozen=True)
class CloudStackRegistrationArgs:
    spec: RegistrationSpec
    #: e.g. http://<router EIP>:8080/client/api
    api_url: pulumi.Input[str]
    #: Secrets Manager id of <prefix>/api-keys (the name or the ARN)
    api_keys_secret_id: pulumi.Input[str]
    #: AWS region of that secret
    region: pulumi.Input[str]
    #: EFS DNS name; storage URLs are nfs://<efs_dns>/<zone>/primary|secondary
    efs_dns: pulumi.Input[str]
    #: host index → the EC2 instance of that host: its cluster's hosts resource depends on it,
    #: so a scale-in deregisters the host (maintenance, VMs moved, deleteHost) in an update
    #: that Pulumi runs before it deletes the instance.
    host_dependencies: Mapping[int, pulumi.Resource] = field(default_factory=dict)
    #: e.g. the management server instance; applied to every child.
    depends_on: Sequence[pulumi.Resource] = ()
    #: The stack's AWS identity, non-secret parts only: {"profile", "assumeRoles": [{"roleArn",
    #: "externalId", "sessionName", "duration", ...}]} (from aws:profile / aws:assumeRoles,
    #: client.identity_from_config); the provider reads the API keys and the hosts'
    #: readiness with it. Empty: boto3's defaults.
    aws_identity: Mapping[str, Any] = field(default_factory=dict)
    #: SSM path under which each host's boot script signals it is ready for addHost
    #: (`<prefix>/host-ready`; the parameter is `<this>/<overlay ip>`). Empty: do not wait.
    host_ready_prefix: pulumi.Input[str] = ""
    #: Every other part of the stack (its components): the workload guard depends on them, so
    #: `pulumi destroy` deletes nothing of theirs before it has checked for VMs.
    guarded: Sequence[pulumi.Resource] = ()
    #: The SSM parameter the router polls for its console forwards (`<root>/console-forwards`,
    #: created by the stack with consoles.NO_CONSOLE); the registration writes the console
    #: proxy's address into it. "" or None: no console forwards (nothing planned for them).
    console_forwards_parameter: Optional[pulumi.Input[str]] = ""
    #: The console address (the router's second Elastic IP), which consoleproxy.static.publicIp must
    #: name (the registration checks it; the management server's boot writes it).
    console_address: pulumi.Input[str] = ""
    #: With spec.ldap: the ARN and version id of the Secrets Manager secret holding the bind
    #: password; the registration reads the value only when it applies it (never an input).
    ldap_bind_secret: pulumi.Input[str] = ""
    ldap_bind_version: pulumi.Input[str] = ""
    #: With LDAPS: the secret holding the truststore's password (ManagementServer.ldap_truststore_secret_arn).
    ldap_truststore_secret: pulumi.Input[str] = ""


def stack_aws_identity() -> dict[str, Any]:
    """The stack's AWS identity for the provider: aws:profile and the aws:assumeRoles chain
    (non-secret keys); aws:region is the `region` argument. Check stack_aws_problems first."""
    from .client import identity_from_config

    config = pulumi.Config("aws")
    return identity_from_config(config.get("profile"), config.get_object("assumeRoles"))


def stack_aws_problems() -> list:
    """settings.Problem for each `aws:` setting the registration cannot use (the old
    aws:assumeRole key, a malformed aws:assumeRoles entry): reported with the stack's other
    problems, before anything is created."""
    from components.model.settings import Problem

    from .client import identity_problems

    config = pulumi.Config("aws")
    return [Problem(key, value, message) for key, value, message in
            identity_problems(_config_value(config, "assumeRoles"), _config_value(config, "assumeRole"))]


def _config_value(config: pulumi.Config, key: str) -> Any:
    """The key's object (JSON), or its text when it is not JSON (a plain role ARN)."""
    text = config.get(key)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


class CloudStackRegistration(pulumi.ComponentResource):
    zone_id: pulumi.Output[str]
    pod_id: pulumi.Output[str]
    cluster_ids: pulumi.Output[dict]
    host_ids: pulumi.Output[dict]

    def __init__(self, name: str, args: CloudStackRegistrationArgs,
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("cloudstack-ec2:registration:CloudStackRegistration", name, None, opts)
        spec = args.spec
        unknown = sorted(set(args.host_dependencies) - {h.index for h in spec.hosts})
        if unknown:
            raise ValueError(f"registration: host_dependencies has indexes {unknown} that are not hosts of the "
                             f"spec (host indexes: {sorted(h.index for h in spec.hosts)})")
        deferred: dict[str, Any] = {
            "endpoint": args.api_url, "secret_id": args.api_keys_secret_id,
            "region": args.region, "efs_dns": args.efs_dns,
            "aws": dict(args.aws_identity), "host_ready_prefix": args.host_ready_prefix,
            "console_forwards_parameter": args.console_forwards_parameter, "console_address": args.console_address,
            "ldap_bind_secret": args.ldap_bind_secret, "ldap_bind_version": args.ldap_bind_version,
            "ldap_truststore_secret": args.ldap_truststore_secret,
        }
        spec = with_console_parameter(spec, args.console_forwards_parameter)
        # A host's instance id: a replaced instance re-registers the host (its old record is dead).
        for h in spec.hosts:
            dep = args.host_dependencies.get(h.index)
            deferred[f"instance-{h.index}"] = dep.id if isinstance(dep, pulumi.CustomResource) else ""
        self.plan: list[PlannedResource] = plan_registration(spec)
        self.children: dict[str, pulumi.Resource] = {}
        #: planned name → names of the children (and external resources) it depends on
        self.dependencies: dict[str, list[str]] = {}

        def value(v: Any) -> Any:
            if isinstance(v, Ref):
                return getattr(self.children[v.resource], v.key)
            if isinstance(v, Deferred):
                if not v.prefix and not v.suffix:
                    return deferred[v.name]
                return pulumi.Output.concat(v.prefix, deferred[v.name], v.suffix)
            if isinstance(v, list):
                return [value(x) for x in v]
            if isinstance(v, dict):
                return {k: value(x) for k, x in v.items()}
            return v

        for planned in self.plan:
            deps = [self.children[d] for d in sorted(planned.refs())]
            dep_names = sorted(planned.refs())
            for i in planned.host_indexes:
                if i in args.host_dependencies:
                    deps.append(args.host_dependencies[i])
                    dep_names.append(f"instance-{i}")
            deps.extend(args.depends_on)
            if planned.kind == "workload_guard":
                deps.extend(args.guarded)
            self.dependencies[planned.name] = dep_names
            cls = RESOURCE_CLASSES[planned.kind]
            self.children[planned.name] = cls(
                f"{name}-{planned.name}",
                {k: value(v) for k, v in planned.props.items()},
                pulumi.ResourceOptions(parent=self, depends_on=deps),
            )

        c = self.children
        self.zone_id = c["zone"].id
        self.pod_id = c["pod"].id
        self.cluster_ids = pulumi.Output.all(**{str(s.index): c[f"cluster-{s.index}"].id for s in spec.clusters})
        self.host_ids = pulumi.Output.all(*[c[f"hosts-{s.index}"].host_ids for s in spec.clusters]).apply(
            lambda parts: {k: v for part in parts for k, v in (part or {}).items()})
        #: the console proxy's public IP the router forwards the console address to (None: no console forwards)
        self.console_proxy_ip = c["console-forwards"].publicip if "console-forwards" in c else None
        self.register_outputs({
            "zone_id": self.zone_id,
            "pod_id": self.pod_id,
            "physical_network_id": c["physical-network"].id,
            "cluster_ids": self.cluster_ids,
            "host_ids": self.host_ids,
            "primary_storage_id": c["primary-storage"].id,
            "image_store_id": c["image-store"].id,
            "console_proxy_ip": self.console_proxy_ip,
        })
