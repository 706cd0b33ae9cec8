"""The deployment's CloudWatch alarms and dashboard, as data.

Pure module (no Pulumi import): components/resources/alarms.py declares them. Every metric
named here is one the deployment produces (components/model/monitoring.py: the agent's
memory and disk, CloudStack's exporter, the management log's error count) or one AWS
publishes (PUBLISHED, with the page that lists it); tests check each alarm and widget
against that list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from components.model import monitoring, recovery
from components.model.naming import member_name

#: Metrics AWS publishes that the alarms and dashboard use, by namespace (EC2 User Guide
#: "List the available CloudWatch metrics for your instances"; RDS User Guide "Amazon
#: CloudWatch metrics for Amazon RDS"; EFS User Guide "Amazon CloudWatch metrics for
#: Amazon EFS").
PUBLISHED: dict[str, frozenset[str]] = {
    "AWS/EC2": frozenset({"StatusCheckFailed", "StatusCheckFailed_System", "StatusCheckFailed_Instance",
                          "NetworkIn", "NetworkOut", "CPUUtilization"}),
    "AWS/RDS": frozenset({"CPUUtilization", "FreeStorageSpace", "DatabaseConnections"}),
    "AWS/EFS": frozenset({"ClientConnections", "TotalIOBytes", "PercentIOLimit"}),
}
#: The agent's names for memory and root-disk use (CloudWatch User Guide, "Metrics
#: collected by the CloudWatch agent": mem_used_percent, disk_used_percent).
AGENT_METRICS = frozenset({"mem_used_percent", "disk_used_percent"})
#: The count of ERROR events of the management log (a metric filter of its log group).
LOG_ERRORS_METRIC = "ManagementLogErrors"
#: A management log event at level ERROR: log4j's date (one token in log4j2's ISO8601,
#: `2024-03-11T09:14:02,118`) then the level (client/conf/log4j-cloud.xml.in: `%d{ISO8601}
#: %-5p ...`), as a space-delimited filter pattern (CloudWatch Logs User Guide, "Filter
#: pattern syntax for metric filters": [w1, w2 = value, ...]).
LOG_ERRORS_PATTERN = '[timestamp, level = "ERROR", ...]'
#: The count of the router pair's takeovers (a metric filter of the router log group).
ROUTER_TAKEOVER_METRIC = "RouterPairTakeovers"
#: A router becoming active: the line userdata/router.sh pair_vrrp writes to
#: monitoring.ROUTER_PAIR_LOG when keepalived makes it MASTER (notify_master), before it
#: takes the overlay route and the Elastic IPs; counted whether or not that takeover then
#: completes. A quoted term matches the exact phrase anywhere in the event, case-sensitively
#: (CloudWatch Logs User Guide, "Filter pattern syntax for metric filters": "Using filter
#: patterns to match terms in unstructured log events").
ROUTER_TAKEOVER_PATTERN = '"router pair: keepalived state MASTER"'

#: Capacity alarms: above this share (%) of the zone's total.
CAPACITY_PERCENT = 80
#: CloudStack's capacity kinds the alarms and the dashboard watch: the exporter's metric,
#: its extra dimensions and what the kind is called.
CAPACITY: dict[str, tuple[str, dict[str, str]]] = {
    "CPU": ("cloudstack_host_cpu_usage_mhz_total", {}),
    "Memory": ("cloudstack_host_memory_usage_mibs_total", {}),
    "PrimaryStorage": ("cloudstack_storage_pool_gibs_total", {"type": "primary"}),
    "PublicIPs": ("cloudstack_public_ips_total", {}),
}


@dataclass(frozen=True)
class Metric:
    """One metric of an alarm or widget: namespace, name, dimensions, statistic."""

    namespace: str
    name: str
    dimensions: Mapping[str, str] = field(default_factory=dict)
    stat: str = "Maximum"


@dataclass(frozen=True)
class Alarm:
    """A CloudWatch alarm: `metric` compared with `threshold`, or the expression `expression`
    of `metrics` (ids m0, m1, ...) when `expression` is set. `description` says what to do."""

    key: str
    description: str
    metrics: tuple[Metric, ...]
    comparison: str
    threshold: float
    evaluation_periods: int = 3
    period: int = 300
    expression: Optional[str] = None
    treat_missing_data: str = "notBreaching"
    #: An EC2 action on the metric's instance besides notifying the topic: "recover" or
    #: "reboot" (recovery.action_arn); None: notify only.
    ec2_action: Optional[str] = None


@dataclass(frozen=True)
class Targets:
    """What the alarms watch: the stack, the CloudStack zone, the instances (ids), the RDS
    identifier, its allocated storage (GiB), the EFS file system; `more_instances`: (alarm
    key, label, instance id) of a second router and further management servers."""

    stack: str
    zone: str
    router_id: str
    management_id: str
    host_ids: Sequence[str]
    db_identifier: str
    db_storage_gb: int
    efs_id: str
    more_instances: Sequence[tuple[str, str, str]] = ()
    #: routerCount 2: the pair's takeovers are counted (ROUTER_TAKEOVER_METRIC).
    router_pair: bool = False


def _zone_metric(t: Targets, name: str, filter_: str, stat: str = "Maximum", **extra: str) -> Metric:
    return Metric(monitoring.namespace(t.stack), name, {"zone": t.zone, "filter": filter_, **extra}, stat)


def capacity_metrics(t: Targets, kind: str) -> tuple[Metric, Metric]:
    """(allocated, total) of capacity `kind`. Sum over the period: the per-host (per-pool)
    totals share these dimensions (monitoring.EXPORTED_METRICS), and each scrape adds the
    zone's allocated value and every host's total to the same period, so their ratio is
    the zone's share whatever the number of scrapes in it."""
    name, extra = CAPACITY[kind]
    return (_zone_metric(t, name, "allocated", "Sum", **extra), _zone_metric(t, name, "total", "Sum", **extra))


#: What the alarms call the instances of each role that has several (a pair's routers, the
#: management servers); member `i` is named naming.member_name(role, i).
_LABELS = {"router": "overlay router", "management": "management server"}

#: The instance status check's alarm on a router or a management server reboots the instance.
#: The CloudWatch User Guide ("Create alarms to stop, terminate, reboot, or recover an EC2
#: instance") recommends the reboot action for instance status check failures and the recover
#: action for system status check failures, and refuses recover on StatusCheckFailed_Instance.
#: A failed instance check means the operating system no longer answers (its kernel, memory,
#: network configuration or file system): Session Manager cannot reach it either, so a reboot
#: is what an operator would do, and every boot re-runs the role's script, which finds its
#: work done (docs/boot.md "Re-runs, reboots and replaced instances"). An alarm acts once per
#: change to ALARM, so an instance that stays failed is rebooted once, not in a loop.
INSTANCE_CHECK_METRIC = "StatusCheckFailed_Instance"
#: A failed system check fails the instance check too; the guide avoids a race between the
#: recover and reboot actions with different evaluation periods: three one-minute periods for
#: the reboot alarm against the recover alarm's two (recovery.EVALUATION_PERIODS).
INSTANCE_CHECK_EVALUATION_PERIODS = 3
#: Alarms with an EC2 action treat missing data as missing (the same guide: EC2 metrics can
#: pause while the instance is healthy; such alarms should act only in the ALARM state). A
#: stopped instance reports nothing and is left alone.
EC2_MISSING_DATA = "missing"


def instance_label(name: str) -> str:
    """"overlay router 1" of "router-1", "management server" of "management"."""
    role, _, index = name.partition("-")
    return f"{_LABELS[role]} {index}".strip()


def more_instances(router_count: int, management_count: int) -> list[tuple[str, str]]:
    """(alarm key, label) of the routers and management servers after the first of each, the
    order Targets.more_instances takes: ("router-1", "overlay router 1"), ("management-1",
    "management server 1"), ..."""
    return [(member_name(role, i), instance_label(member_name(role, i)))
            for role, count in (("router", router_count), ("management", management_count))
            for i in range(1, count)]


def _ec2_status(key: str, what: str, instance_id: str) -> Alarm:
    """A KVM host's alarm on both status checks (StatusCheckFailed), notifying only: a reboot or
    a recovery would take its VMs down behind CloudStack's back."""
    return Alarm(
        f"{key}-status-check", f"The {what} ({instance_id}) fails its EC2 status checks. Check the instance in "
        "the EC2 console (System log, Status checks); a failed system check needs a stop and start (put the "
        "host into maintenance in CloudStack first if it still answers); a failed instance check: reboot it.",
        (Metric("AWS/EC2", "StatusCheckFailed", {"InstanceId": instance_id}),), "GreaterThanOrEqualToThreshold",
        1, evaluation_periods=2, period=60)


def instance_check_alarm(key: str, what: str, instance_id: str) -> Alarm:
    """`<key>-status-check`: a router's or management server's instance status check failing
    for three minutes reboots it and notifies (INSTANCE_CHECK_METRIC)."""
    return Alarm(
        f"{key}-status-check", f"The {what} ({instance_id}) failed its EC2 instance status check for 3 minutes: "
        "its operating system does not answer (kernel, memory, network configuration, file system). EC2 reboots "
        "it once. If the alarm stays on, read its System log (EC2 console: Actions, Monitor and troubleshoot, Get "
        "system log) and its log group, then stop and start it, or replace it with `pulumi up --replace`.",
        (Metric("AWS/EC2", INSTANCE_CHECK_METRIC, {"InstanceId": instance_id}),), "GreaterThanOrEqualToThreshold",
        1, evaluation_periods=INSTANCE_CHECK_EVALUATION_PERIODS, period=60, treat_missing_data=EC2_MISSING_DATA,
        ec2_action="reboot")


def system_check_alarm(name: str, instance_id: str, instance_type: str) -> Alarm:
    """Key `name` (a router's or management server's resource name): its system status check
    failing for two minutes recovers it (recovery.METRIC) where its type supports EC2's recover
    action, and notifies either way."""
    what = f"The {instance_label(name)} ({instance_id}, {instance_type}) failed its EC2 system status check (AWS's " \
        "hardware, power or network under it) for 2 minutes."
    if recovery.supports_recovery(instance_type):
        todo = " EC2 recovers it onto a healthy host: same id, private addresses, Elastic IPs and volumes; what " \
            "was in memory is lost (the AWS Health Dashboard reports AWS_EC2_INSTANCE_AUTO_RECOVERY_SUCCESS or " \
            "_FAILURE). If the alarm stays on, stop and start the instance."
    else:
        todo = f" No recover action: {recovery.not_recovered_reason(instance_type)}."
    return Alarm(name, what + todo, (Metric(recovery.NAMESPACE, recovery.METRIC, {"InstanceId": instance_id}),),
                 "GreaterThanOrEqualToThreshold", 1, evaluation_periods=recovery.EVALUATION_PERIODS,
                 period=recovery.PERIOD_SECONDS, treat_missing_data=EC2_MISSING_DATA,
                 ec2_action="recover" if recovery.supports_recovery(instance_type) else None)


def router_pair_alarms(t: Targets) -> list[Alarm]:
    """With a router pair: an alarm on any takeover (a router becoming active), within the
    minute. The first election at boot counts too: an alarm right after a deployment that
    started the routers is expected."""
    if not t.router_pair:
        return []
    return [Alarm(
        "router-pair-takeover",
        "A router of the overlay pair became active (keepalived MASTER): the other router failed, was stopped or "
        "lost VRRP contact, and this one took the overlay route and the Elastic IPs. Check the other router's "
        "instance (EC2 status checks, the router status-check alarms); on both routers (Session Manager) "
        f"`journalctl -u keepalived` and {monitoring.ROUTER_PAIR_LOG} (CloudWatch: the router log "
        "group): 'takeover incomplete' means the AWS side still points at the other router "
        "(cloudstack-ec2-router-pair.timer retries it).",
        (Metric(monitoring.namespace(t.stack), ROUTER_TAKEOVER_METRIC, {}, "Sum"),),
        "GreaterThanOrEqualToThreshold", 1, evaluation_periods=1, period=60)]


def cloud_alarms(t: Targets) -> list[Alarm]:
    """The alarms of CloudStack itself: its management server answering, its hosts Up, its
    capacity, errors in its log."""
    ns = monitoring.namespace(t.stack)
    alarms = [
        Alarm("management-unhealthy",
              "CloudStack's management server has not reported the zone's hosts for 10 minutes: the management "
              "server, its exporter or the CloudWatch agent is down. Run `cloudstack-ec2 status --stack "
              f"{t.stack}`; on the server (Session Manager) `systemctl status cloudstack-management` and "
              "/var/log/cloudstack/management/management-server.log.",
              (_zone_metric(t, "cloudstack_hosts_total", "total", "SampleCount"),), "LessThanThreshold", 1,
              evaluation_periods=2, treat_missing_data="breaching"),
        Alarm("host-not-up",
              "A KVM host of the zone is not Up (Disconnected, Down, Alert or in maintenance) for 10 minutes. "
              f"`cloudstack-ec2 status --stack {t.stack}` names it; on the host check `systemctl status "
              "cloudstack-agent` and /var/log/cloudstack/agent/agent.log (CloudWatch: the kvm-host log group).",
              (_zone_metric(t, "cloudstack_hosts_total", "total"), _zone_metric(t, "cloudstack_hosts_total", "online")),
              "GreaterThanThreshold", 0, evaluation_periods=2, expression="m0 - m1"),
        Alarm("management-log-errors",
              "More than 20 ERROR events in the management server's log in 5 minutes, twice in a row. Read them "
              "in the management log group (CloudWatch Logs Insights: filter @message like / ERROR /).",
              (Metric(ns, LOG_ERRORS_METRIC, {}, "Sum"),), "GreaterThanThreshold", 20, evaluation_periods=2),
    ]
    for kind in CAPACITY:
        allocated, total = capacity_metrics(t, kind)
        alarms.append(Alarm(
            f"capacity-{kind.lower()}",
            f"The zone has allocated more than {CAPACITY_PERCENT}% of its {kind} capacity for 15 minutes. Add "
            "KVM hosts (hostCount) or free resources; public IPs: add a public range. CloudStack refuses new "
            "VMs once a capacity is exhausted (its own thresholds: cluster.*.capacity.disablethreshold).",
            (allocated, total), "GreaterThanThreshold", CAPACITY_PERCENT,
            expression="IF(m1 > 0, 100 * m0 / m1, 0)"))
    return alarms


def aws_alarms(t: Targets) -> list[Alarm]:
    """The alarms of what the cloud runs on: RDS and the instances' status checks (the routers'
    and management servers' system checks are system_check_alarm's, declared with EC2's recovery)."""
    db = {"DBInstanceIdentifier": t.db_identifier}
    low_storage = int(t.db_storage_gb * 1024 ** 3 * 0.10)
    return [
        Alarm("database-storage",
              f"The database has less than 10% of its {t.db_storage_gb} GiB free. Raise dbAllocatedStorageGb and "
              "run `pulumi up` (RDS grows gp3 storage online), or enable storage autoscaling.",
              (Metric("AWS/RDS", "FreeStorageSpace", db, "Minimum"),), "LessThanThreshold", low_storage),
        Alarm("database-cpu",
              "The database's CPU has been above 80% for 15 minutes. Check Performance Insights or the slow "
              "queries; a larger dbInstanceClass needs a `pulumi up` (a short outage unless Multi-AZ).",
              (Metric("AWS/RDS", "CPUUtilization", db, "Average"),), "GreaterThanThreshold", 80),
        instance_check_alarm("router", instance_label("router"), t.router_id),
        *router_pair_alarms(t),
        instance_check_alarm("management", instance_label("management"), t.management_id),
        *(instance_check_alarm(key, label, instance) for key, label, instance in t.more_instances),
        *(_ec2_status(f"kvm-host-{i}", f"KVM host {i}", host) for i, host in enumerate(t.host_ids)),
    ]


def alarms(t: Targets) -> list[Alarm]:
    """Every alarm of the deployment, keys unique."""
    found = cloud_alarms(t) + aws_alarms(t)
    keys = [a.key for a in found]
    if len(set(keys)) != len(keys):
        raise ValueError(f"alarm keys repeat: {keys}")
    return found


def planned_alarms(settings) -> list[Alarm]:
    """Every alarm a stack of `settings` (components.model.settings.Settings) declares, with
    placeholder ids: alarms() of its Targets (components/resources/alarms.py) and each router's
    and management server's system_check_alarm (components/resources/recovery.py). The cost
    estimate counts these."""
    instances = more_instances(settings.router_count, settings.management_server_count)
    t = Targets("stack", "zone", "i-router", "i-management", [f"i-host-{i}" for i in range(settings.host_count)],
                "db", settings.db_allocated_storage_gb, "fs", [(k, label, f"i-{k}") for k, label in instances],
                router_pair=settings.router_count == 2)
    return alarms(t) + [system_check_alarm(name, f"i-{name}", instance_type) for name, instance_type in
                        recovery.targets(settings.router_instance_type, settings.router_count,
                                         settings.management_instance_type, settings.management_server_count)]


def alarm_metric_count(settings) -> int:
    """How many metrics the alarms of `settings` watch (CloudWatch bills an alarm per metric it
    evaluates, a metric-math alarm per metric of its expression)."""
    return sum(len(a.metrics) for a in planned_alarms(settings))


# -------------------------------------------------------------------- topic policy ----

#: What the account's own principals may do on the topic, each only as far as their IAM
#: policies allow (the actions SNS's default topic policy lists; SNS Developer Guide,
#: "Example cases for Amazon SNS access control").
TOPIC_MANAGEMENT_ACTIONS = ("sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:AddPermission",
                            "sns:RemovePermission", "sns:DeleteTopic", "sns:Subscribe",
                            "sns:ListSubscriptionsByTopic", "sns:Publish")


def alarm_arn_pattern(partition: str, region: str, account: str) -> str:
    """`arn:<partition>:cloudwatch:<region>:<account>:alarm:*`: every alarm of the account in
    the region (Service Authorization Reference, Amazon CloudWatch resource types: alarm).
    Not narrower: the alarms carry Pulumi's generated names, which share no prefix of the
    stack's, and a principal of the account allowed cloudwatch:PutMetricAlarm could give its
    own alarm any name anyway."""
    return f"arn:{partition}:cloudwatch:{region}:{account}:alarm:*"


def topic_policy(partition: str, region: str, account: str, topic_arn: str, alarms_principal: str) -> dict:
    """The access policy of the alarm topic `topic_arn`, replacing the default policy SNS gives
    a topic created without one, which allows every principal of the account (`"AWS": "*"`
    with `AWS:SourceOwner`) to delete the topic, subscribe an endpoint, change the policy or
    publish, whatever its IAM policies say: for access within an account, a resource policy's
    Allow suffices (IAM User Guide, "Policy evaluation logic": same-account requests).

    - The account's principals: TOPIC_MANAGEMENT_ACTIONS, delegated to IAM (the account root
      as principal; the deployer's sns:* grants keep working, an instance role without SNS
      permissions gets nothing).
    - CloudWatch alarms (`alarms_principal`, cloudwatch.amazonaws.com), the topic's only
      publisher: sns:Publish for alarms of this account in `region` only, by `aws:SourceAccount`
      and `aws:SourceArn` (alarm_arn_pattern; SNS Developer Guide, "Example cases for Amazon
      SNS access control", CloudWatch alarms publishing to a topic of another account; IAM
      User Guide, "The confused deputy problem"). The topic's key lets CloudWatch use it for
      topics of this account and region (components/model/monitoring.py logs_key_policy).
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AccountManagesThroughIam", "Effect": "Allow",
             "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
             "Action": list(TOPIC_MANAGEMENT_ACTIONS), "Resource": topic_arn},
            {"Sid": "CloudWatchAlarmsOfTheAccountPublish", "Effect": "Allow",
             "Principal": {"Service": alarms_principal}, "Action": "sns:Publish", "Resource": topic_arn,
             "Condition": {"StringEquals": {"aws:SourceAccount": account},
                           "ArnLike": {"aws:SourceArn": alarm_arn_pattern(partition, region, account)}}},
        ],
    }


# ------------------------------------------------------------------------ dashboard ----

def _series(m: Metric, **options) -> list:
    return [m.namespace, m.name, *(x for kv in m.dimensions.items() for x in kv),
            {"stat": m.stat, **options}]


def _widget(title: str, metrics: list, x: int, y: int, region: str, **properties) -> dict:
    return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6,
            "properties": {"title": title, "region": region, "metrics": metrics, "view": "timeSeries",
                           "period": 300, **properties}}


def _capacity_widget(t: Targets, region: str) -> list:
    series = []
    for i, kind in enumerate(CAPACITY):
        allocated, total = capacity_metrics(t, kind)
        series += [_series(allocated, id=f"a{i}", visible=False), _series(total, id=f"t{i}", visible=False),
                   [{"expression": f"IF(t{i} > 0, 100 * a{i} / t{i}, 0)", "label": f"{kind} %", "id": f"p{i}"}]]
    return series


def instance_namespaces(t: Targets) -> list[tuple[str, str]]:
    """(instance id, the namespace of its agent's metrics: monitoring.agent_namespace of its
    role) of every instance: routers, management servers, KVM hosts."""
    return [(t.router_id, monitoring.agent_namespace(t.stack, "router")),
            (t.management_id, monitoring.agent_namespace(t.stack, "management")),
            *((i, monitoring.agent_namespace(t.stack, key.partition("-")[0])) for key, _, i in t.more_instances),
            *((h, monitoring.agent_namespace(t.stack, "kvm-host")) for h in t.host_ids)]


def dashboard_body(t: Targets, region: str) -> dict:
    """The dashboard (CloudWatch API reference, "Dashboard Body Structure and Syntax"): zone
    capacity, hosts by state, VMs, management log errors, router throughput, RDS, EFS,
    every instance's memory and disk."""
    ns = monitoring.namespace(t.stack)
    instances = instance_namespaces(t)
    hosts = [_series(_zone_metric(t, "cloudstack_hosts_total", f), label=f) for f in ("online", "offline", "total")]
    vms = [_series(_zone_metric(t, "cloudstack_vms_total", s), label=s) for s in ("running", "stopped", "error")]
    rows = [
        ("Zone capacity allocated (%)", _capacity_widget(t, region), {"yAxis": {"left": {"min": 0, "max": 100}}}),
        ("KVM hosts by state", hosts, {}),
        ("Virtual machines", vms, {}),
        ("Management log ERROR events", [_series(Metric(ns, LOG_ERRORS_METRIC, {}, "Sum"))], {}),
        ("Router throughput (bytes)", [_series(Metric("AWS/EC2", n, {"InstanceId": t.router_id}, "Sum"))
                                       for n in ("NetworkIn", "NetworkOut")], {}),
        ("Database", [_series(Metric("AWS/RDS", "CPUUtilization", {"DBInstanceIdentifier": t.db_identifier},
                                     "Average")),
                      _series(Metric("AWS/RDS", "DatabaseConnections", {"DBInstanceIdentifier": t.db_identifier},
                                     "Maximum"))], {}),
        ("EFS", [_series(Metric("AWS/EFS", n, {"FileSystemId": t.efs_id}, s))
                 for n, s in (("ClientConnections", "Sum"), ("TotalIOBytes", "Sum"), ("PercentIOLimit", "Maximum"))],
         {}),
        ("Instance memory used (%)", [_series(Metric(n, "mem_used_percent", {"InstanceId": i}))
                                      for i, n in instances], {}),
        ("Instance root disk used (%)", [_series(Metric(n, "disk_used_percent", {"InstanceId": i}))
                                         for i, n in instances], {}),
    ]
    widgets = [_widget(title, metrics, 12 * (n % 2), 6 * (n // 2), region, **props)
               for n, (title, metrics, props) in enumerate(rows)]
    return {"widgets": widgets}


def dashboard_json(t: Targets, region: str) -> str:
    return json.dumps(dashboard_body(t, region), separators=(",", ":"))


def dashboard_metrics(body: dict) -> list[tuple[str, str]]:
    """(namespace, name) of every metric the dashboard's widgets name (expressions aside)."""
    return [(series[0], series[1]) for w in body["widgets"] for series in w["properties"]["metrics"]
            if isinstance(series[0], str)]


def produced_metrics(stack: str) -> dict[str, frozenset[str]]:
    """namespace -> the metric names the deployment produces or AWS publishes for it: in
    monitoring.namespace(stack) CloudStack's (the exporter's, the log metric filters'), in each
    role's monitoring.agent_namespace the agent's."""
    ours = frozenset(monitoring.EXPORTED_METRICS) | {LOG_ERRORS_METRIC, ROUTER_TAKEOVER_METRIC}
    return {**PUBLISHED, monitoring.namespace(stack): ours,
            **{monitoring.agent_namespace(stack, role): AGENT_METRICS for role in monitoring.AGENT_ROLES}}


#: The console's host of each partition (the dashboard URL).
_CONSOLE = {"aws": "console.aws.amazon.com", "aws-cn": "console.amazonaws.cn",
            "aws-us-gov": "console.amazonaws-us-gov.com"}


def dashboard_url(partition: str, region: str, name: str) -> str:
    """The dashboard's page in the AWS console."""
    host = _CONSOLE.get(partition, _CONSOLE["aws"])
    return f"https://{region}.{host}/cloudwatch/home?region={region}#dashboards:name={name}"
