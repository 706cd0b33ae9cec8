"""RecoveryAlarms: EC2 automatic recovery of the routers and the management server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.model import recovery


@dataclass(frozen=True)
class RecoveryTarget:
    """One instance to recover: its resource name (the alarm is named after it), id and type."""

    name: str
    instance_id: pulumi.Input[str]
    instance_type: str


@dataclass(frozen=True)
class RecoveryAlarmsArgs:
    targets: Sequence[RecoveryTarget]
    region: str
    #: An SNS topic told when an alarm fires and when it clears (None: no notification).
    notification_topic_arn: Optional[pulumi.Input[str]] = None
    tags: dict = field(default_factory=dict)


class RecoveryAlarms(pulumi.ComponentResource):
    """A CloudWatch alarm on each target's StatusCheckFailed_System whose action is EC2's
    recover action (components/model/recovery.py): on failed hardware the instance moves to
    a healthy host and keeps its id, private addresses, Elastic IPs and volumes. A target whose
    type the action does not support gets no alarm (`skipped` names it).

    Outputs: alarm_names {target name: alarm name}, skipped [target names]."""

    def __init__(self, name: str, args: RecoveryAlarmsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:RecoveryAlarms", name, None, opts)
        action = recovery.recover_action_arn(aws.get_partition().partition, args.region)
        notify = [args.notification_topic_arn] if args.notification_topic_arn is not None else []
        self.alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}
        self.skipped = [t.name for t in args.targets if not recovery.supports_recovery(t.instance_type)]
        for target in args.targets:
            if target.name in self.skipped:
                continue
            self.alarms[target.name] = aws.cloudwatch.MetricAlarm(
                f"{name}-{target.name}",
                alarm_description=f"Recover {target.name} ({target.instance_type}) on a failed system status check",
                namespace=recovery.NAMESPACE, metric_name=recovery.METRIC,
                dimensions={"InstanceId": target.instance_id}, statistic="Maximum",
                period=recovery.PERIOD_SECONDS, evaluation_periods=recovery.EVALUATION_PERIODS,
                threshold=1, comparison_operator="GreaterThanOrEqualToThreshold",
                alarm_actions=[action, *notify], ok_actions=notify,
                tags=dict(args.tags), opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"alarm_names": {k: a.name for k, a in self.alarms.items()},
                               "skipped": self.skipped})
