"""DeploymentAlarms: the alarms' SNS topic (encrypted), the management log's error count,
the alarms and the dashboard. What they are comes from components/model/alarms.py (pure);
this component only declares it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.model import alarms as model
from components.model import monitoring, recovery


@dataclass(frozen=True)
class DeploymentAlarmsArgs:
    stack: str
    zone: str
    #: The key of the deployment's log groups (DeploymentLogs.key_arn): it encrypts the topic.
    key_arn: pulumi.Input[str]
    #: The management server's log group (DeploymentLogs.log_groups["management"]).
    management_log_group: pulumi.Input[str]
    router_id: pulumi.Input[str]
    management_id: pulumi.Input[str]
    host_ids: Sequence[pulumi.Input[str]]
    db_identifier: pulumi.Input[str]
    db_storage_gb: int
    efs_id: pulumi.Input[str]
    #: alarmEmail: subscribed to the topic when set (SNS mails a confirmation link first).
    email: str = ""
    #: (alarm key, label, instance id) of a second router and further management servers.
    more_instances: Sequence[tuple[str, str, pulumi.Input[str]]] = ()
    #: The router log group when routerCount is 2 (DeploymentLogs.log_groups["router"]): its
    #: takeovers are counted and alarmed; None with one router.
    router_pair_log_group: Optional[pulumi.Input[str]] = None
    tags: dict = field(default_factory=dict)


class DeploymentAlarms(pulumi.ComponentResource):
    """An SNS topic encrypted with the deployment's key, with its own access policy
    (model.topic_policy: the account's principals through IAM, CloudWatch alarms of the
    account publish) and an email subscription when `email` is set; a metric filter counting
    ERROR events of the management log (and, with `router_pair_log_group`, one counting the
    router pair's takeovers); every alarm of model.alarms, each notifying the topic when it
    fires and when it recovers (the routers' and management servers' instance status check
    alarms also reboot them); a dashboard.

    Outputs: topic_arn (for further alarms: RecoveryAlarms), dashboard_name, dashboard_url.
    """

    def __init__(self, name: str, args: DeploymentAlarmsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:DeploymentAlarms", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        region = aws.get_region().region
        partition = aws.get_partition().partition
        topic = self._topic(name, args, partition, region)
        log_metric = self._count(f"{name}-management-log-errors", args.management_log_group,
                                 model.LOG_ERRORS_PATTERN, model.LOG_ERRORS_METRIC, args.stack)
        pair = args.router_pair_log_group is not None
        if pair:
            self._count(f"{name}-router-pair-takeovers", args.router_pair_log_group,
                        model.ROUTER_TAKEOVER_PATTERN, model.ROUTER_TAKEOVER_METRIC, args.stack)
        more = len(args.more_instances)
        targets = pulumi.Output.all(args.router_id, args.management_id, args.db_identifier, args.efs_id,
                                    *(i for _, _, i in args.more_instances), *args.host_ids).apply(
            lambda v: model.Targets(args.stack, args.zone, v[0], v[1], v[4 + more:], v[2], args.db_storage_gb, v[3],
                                    tuple((k, label, i) for (k, label, _), i in zip(args.more_instances, v[4:4 + more])),
                                    pair))
        # The alarms' keys are known before their targets resolve: one resource per alarm.
        plan = model.alarms(model.Targets(args.stack, args.zone, "r", "m", [f"h{i}" for i in range(len(args.host_ids))],
                                          "d", args.db_storage_gb, "e",
                                          tuple((k, label, "i") for k, label, _ in args.more_instances), pair))
        for index, alarm in enumerate(plan):
            metric_alarm(f"{name}-{alarm.key}", targets.apply(lambda t, i=index: model.alarms(t)[i]), topic.arn,
                         partition, region, tags, pulumi.ResourceOptions(
                             parent=self, depends_on=[log_metric] if alarm.key == "management-log-errors" else []))
        dashboard_name = f"cloudstack-ec2-{args.stack}"
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=dashboard_name,
            dashboard_body=targets.apply(lambda t: model.dashboard_json(t, region)), opts=child)
        self.topic_arn = topic.arn
        self.dashboard_name = dashboard.dashboard_name
        self.dashboard_url = dashboard.dashboard_name.apply(lambda n: model.dashboard_url(partition, region, n))
        self.register_outputs({"topic_arn": self.topic_arn, "dashboard_url": self.dashboard_url})

    def _topic(self, name: str, args: DeploymentAlarmsArgs, partition: str, region: str) -> aws.sns.Topic:
        """The topic under the deployment's key, its access policy (model.topic_policy) and,
        with `args.email`, the email subscription."""
        child = pulumi.ResourceOptions(parent=self)
        topic = aws.sns.Topic(f"{name}-topic", kms_master_key_id=args.key_arn, tags=dict(args.tags), opts=child)
        account = aws.get_caller_identity().account_id
        alarms_principal = aws.get_service_principal(service_name="cloudwatch", region=region).name
        aws.sns.TopicPolicy(f"{name}-topic-policy", arn=topic.arn, policy=topic.arn.apply(
            lambda arn: json.dumps(model.topic_policy(partition, region, account, arn, alarms_principal))), opts=child)
        if args.email:
            aws.sns.TopicSubscription(f"{name}-email", topic=topic.arn, protocol="email", endpoint=args.email,
                                      opts=child)
        return topic

    def _count(self, name: str, group: pulumi.Input[str], pattern: str, metric: str,
               stack: str) -> aws.cloudwatch.LogMetricFilter:
        """A metric filter adding 1 to `metric` (monitoring.namespace(stack)) per event of
        `group` matching `pattern`, 0 for an event that does not (PutMetricFilter defaultValue)."""
        return aws.cloudwatch.LogMetricFilter(
            name, log_group_name=group, pattern=pattern,
            metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                name=metric, namespace=monitoring.namespace(stack), value="1", default_value="0"),
            opts=pulumi.ResourceOptions(parent=self))


def metric_alarm(name: str, alarm: pulumi.Output, topic_arn: pulumi.Input[str], partition: str, region: str,
                 tags: dict, opts: pulumi.ResourceOptions) -> aws.cloudwatch.MetricAlarm:
    """The CloudWatch alarm `name` of `alarm` (an Output of model.Alarm): it notifies `topic_arn`
    when it fires and when it clears, and on firing also takes its EC2 action (model.Alarm.ec2_action,
    arn:<partition>:automate:<region>:ec2:<action>, recovery.action_arn) on its metric's instance."""
    return aws.cloudwatch.MetricAlarm(
        name, alarm_description=alarm.apply(lambda a: a.description),
        comparison_operator=alarm.apply(lambda a: a.comparison), threshold=alarm.apply(lambda a: a.threshold),
        evaluation_periods=alarm.apply(lambda a: a.evaluation_periods),
        treat_missing_data=alarm.apply(lambda a: a.treat_missing_data),
        namespace=alarm.apply(lambda a: a.metrics[0].namespace if a.expression is None else None),
        metric_name=alarm.apply(lambda a: a.metrics[0].name if a.expression is None else None),
        dimensions=alarm.apply(lambda a: dict(a.metrics[0].dimensions) if a.expression is None else None),
        statistic=alarm.apply(lambda a: a.metrics[0].stat if a.expression is None else None),
        period=alarm.apply(lambda a: a.period if a.expression is None else None),
        metric_queries=alarm.apply(_queries),
        alarm_actions=pulumi.Output.all(alarm, topic_arn).apply(lambda v: [
            *([recovery.action_arn(partition, region, v[0].ec2_action)] if v[0].ec2_action else []), v[1]]),
        ok_actions=[topic_arn], tags=tags, opts=opts)


def _queries(alarm: model.Alarm) -> Optional[list]:
    """The metric queries of an expression alarm (PutMetricAlarm Metrics: the expression
    returns the data, the metrics only feed it)."""
    if alarm.expression is None:
        return None
    return [aws.cloudwatch.MetricAlarmMetricQueryArgs(id="e0", expression=alarm.expression, return_data=True,
                                                      label=alarm.key)] + [
        aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id=f"m{i}", return_data=False,
            metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                namespace=m.namespace, metric_name=m.name, dimensions=dict(m.dimensions), stat=m.stat,
                period=alarm.period))
        for i, m in enumerate(alarm.metrics)]
