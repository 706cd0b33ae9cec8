"""RecoveryAlarms: the system status check alarm of each router and management server, with
EC2's recover action where the instance's type supports it, notifying the alarm topic."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.model import alarms as model
from components.model import recovery
from components.resources.alarms import metric_alarm


@dataclass(frozen=True)
class RecoveryTarget:
    """One instance to watch: its resource name (the alarm is named after it), id and type."""

    name: str
    instance_id: pulumi.Input[str]
    instance_type: str


@dataclass(frozen=True)
class RecoveryAlarmsArgs:
    targets: Sequence[RecoveryTarget]
    region: str
    #: The SNS topic told when an alarm fires and when it clears (DeploymentAlarms.topic_arn).
    notification_topic_arn: pulumi.Input[str]
    tags: dict = field(default_factory=dict)


class RecoveryAlarms(pulumi.ComponentResource):
    """Per target a CloudWatch alarm `<name>-<target name>` on StatusCheckFailed_System
    (model.system_check_alarm): on failed hardware EC2's recover action moves the instance to a
    healthy host, where it keeps its id, private addresses, Elastic IPs and volumes; every alarm
    notifies the topic, also one whose target's type the recover action does not support
    (recovery.supports_recovery; `not_recovered` names them).

    Outputs: alarm_names {target name: alarm name}, not_recovered [target names]."""

    def __init__(self, name: str, args: RecoveryAlarmsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:RecoveryAlarms", name, None, opts)
        partition = aws.get_partition().partition
        self.not_recovered = [t.name for t in args.targets if not recovery.supports_recovery(t.instance_type)]
        self.alarms: dict[str, aws.cloudwatch.MetricAlarm] = {
            t.name: metric_alarm(
                f"{name}-{t.name}", pulumi.Output.from_input(t.instance_id).apply(
                    lambda i, t=t: model.system_check_alarm(t.name, i, t.instance_type)),
                args.notification_topic_arn, partition, args.region, dict(args.tags),
                pulumi.ResourceOptions(parent=self))
            for t in args.targets}
        self.register_outputs({"alarm_names": {k: a.name for k, a in self.alarms.items()},
                               "not_recovered": self.not_recovered})
