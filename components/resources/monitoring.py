"""DeploymentLogs: the deployment's CloudWatch log groups, the key that encrypts them, the
CloudWatch agent's configuration of each role and the Session Manager preferences that
log sessions. What they hold comes from components/model/monitoring.py (pure); this
component only declares it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.model import monitoring
from components.resources.node import Grant


@dataclass(frozen=True)
class DeploymentLogsArgs:
    stack: str
    #: Root of the deployment's names (naming.parameter_root): log groups `<root>/<role>`,
    #: agent configuration parameters `<root>/cloudwatch-agent/<role>`.
    parameter_root: pulumi.Input[str]
    #: logRetentionDays (CloudWatch Logs retentionInDays; 0: never expire).
    retention_days: int = 30
    #: routerCount 2: the router's agent also ships the pair's log (monitoring.agent_config).
    router_pair: bool = False
    tags: dict = field(default_factory=dict)


class DeploymentLogs(pulumi.ComponentResource):
    """A KMS key (rotated yearly) whose policy lets CloudWatch Logs of this region use it
    for the deployment's log groups only, and CloudWatch alarms publish to a topic under it;
    one log group per role of monitoring.ROLES under that key with the retention; per agent
    role an SSM String parameter holding the agent's configuration (read by
    `amazon-cloudwatch-agent-ctl -a fetch-config -c ssm:<name>`); a Session document that
    streams sessions into the sessions group.

    Outputs: key_arn, log_groups (role -> name), agent_parameters (role -> name),
    session_document (its name); grants(role) for the role's instance role.
    """

    def __init__(self, name: str, args: DeploymentLogsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:DeploymentLogs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        retention = monitoring.check_retention(args.retention_days)
        self._stack = args.stack
        partition = aws.get_partition().partition
        region = aws.get_region().region
        account = aws.get_caller_identity().account_id
        root = pulumi.Output.from_input(args.parameter_root)
        arn = lambda group: monitoring.log_group_arn(partition, region, account, group)  # noqa: E731
        self._all_groups_arn = arn("*")
        logs_principal = aws.get_service_principal(service_name="logs", region=region).name
        alarms_principal = aws.get_service_principal(service_name="cloudwatch", region=region).name

        self.key = aws.kms.Key(
            f"{name}-key", description="cloudstack-ec2: the deployment's CloudWatch log groups and alarm topic",
            enable_key_rotation=True, deletion_window_in_days=30, tags=tags,
            policy=root.apply(lambda r: json.dumps(monitoring.logs_key_policy(
                partition, account, logs_principal, arn(f"{r}/*"), alarms_principal, region))),
            opts=child)
        self.key_arn = self.key.arn
        self.log_groups: dict[str, pulumi.Output[str]] = {}
        self.log_group_arns: dict[str, pulumi.Output[str]] = {}
        for role in monitoring.ROLES:
            group = aws.cloudwatch.LogGroup(
                f"{name}-{role}", name=root.apply(lambda r, role=role: monitoring.log_group_name(r, role)),
                retention_in_days=retention, kms_key_id=self.key.arn, tags=tags, opts=child)
            self.log_groups[role] = group.name
            self.log_group_arns[role] = group.name.apply(arn)

        self.agent_parameters: dict[str, pulumi.Output[str]] = {}
        self._parameter_arns: dict[str, pulumi.Output[str]] = {}
        for role in monitoring.AGENT_ROLES:
            parameter = aws.ssm.Parameter(
                f"{name}-agent-{role}", name=root.apply(lambda r, role=role: monitoring.agent_parameter_name(r, role)),
                type="String", tier="Standard", tags=tags,
                description=f"CloudWatch agent configuration of the {role} instances (fetch-config -c ssm:<name>)",
                value=self.log_groups[role].apply(
                    lambda group, role=role: monitoring.agent_config_json(role, group, args.stack, args.router_pair)),
                opts=child)
            self.agent_parameters[role] = parameter.name
            self._parameter_arns[role] = parameter.arn

        document = aws.ssm.Document(
            f"{name}-sessions", name=root.apply(monitoring.session_document_name), document_type="Session",
            document_format="JSON", tags=tags,
            content=self.log_groups["sessions"].apply(lambda g: json.dumps(monitoring.session_document(g))),
            opts=child)
        self.session_document = document.name
        self.register_outputs({"key_arn": self.key_arn, "log_groups": self.log_groups,
                               "agent_parameters": self.agent_parameters, "session_document": self.session_document})

    def grants(self, role: str) -> list[Grant]:
        """The statements role `role` (monitoring.AGENT_ROLES) adds to its instance role
        (monitoring.agent_statements)."""
        values = pulumi.Output.all(self.log_group_arns[role], self.log_group_arns["sessions"],
                                   self._parameter_arns[role])
        statements = monitoring.agent_statements(role, "{group}", "{sessions}", "{parameter}", self._stack,
                                                 self._all_groups_arn)
        return [Grant(s.actions, [values.apply(lambda v, r=r: r.format(group=v[0], sessions=v[1], parameter=v[2]))
                                  for r in s.resources], s.condition)
                for s in statements]
