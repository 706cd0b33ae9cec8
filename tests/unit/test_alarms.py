"""The alarms and the dashboard (components/model/alarms.py), checked directly and as the
program declares them: every metric they name is one the deployment produces or AWS
publishes, every alarm notifies the encrypted topic and says what to do."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re

import pytest

from components.model import alarms, monitoring

T = alarms.Targets("dev", "zone1", "i-router", "i-mgmt", ["i-h0", "i-h1"], "cloudstack-dev-0a1b2c3d", 20, "fs-1")
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


def test_every_alarm_names_only_produced_metrics_and_says_what_to_do():
    produced = alarms.produced_metrics("dev")
    for alarm in alarms.alarms(T):
        for m in alarm.metrics:
            assert m.name in produced[m.namespace], (alarm.key, m)
        assert 40 < len(alarm.description) <= 1024, alarm.key  # PutMetricAlarm AlarmDescription: 0-1024
        assert (alarm.expression is None) == (len(alarm.metrics) == 1), alarm.key


def test_the_alarms_cover_the_cloud_and_what_it_runs_on():
    keys = {a.key for a in alarms.alarms(T)}
    assert {"management-unhealthy", "host-not-up", "management-log-errors", "capacity-cpu", "capacity-memory",
            "capacity-primarystorage", "capacity-publicips", "database-storage", "database-cpu",
            "router-status-check", "management-status-check", "kvm-host-0-status-check",
            "kvm-host-1-status-check"} == keys


def test_a_router_pair_alarms_on_any_takeover_within_the_minute():
    pair = dataclasses.replace(T, router_pair=True)
    [alarm] = [a for a in alarms.alarms(pair) if a.key == "router-pair-takeover"]
    [metric] = alarm.metrics
    assert (metric.namespace, metric.name, metric.stat) == ("CloudStackEC2/dev", alarms.ROUTER_TAKEOVER_METRIC, "Sum")
    assert (alarm.comparison, alarm.threshold, alarm.period, alarm.evaluation_periods) == (
        "GreaterThanOrEqualToThreshold", 1, 60, 1)
    for what in ("journalctl -u keepalived", monitoring.ROUTER_PAIR_LOG, "other router's instance"):
        assert what in alarm.description
    assert {a.key for a in alarms.alarms(pair)} - {a.key for a in alarms.alarms(T)} == {"router-pair-takeover"}


def test_capacity_alarms_fire_above_80_percent_of_the_zone():
    for kind in alarms.CAPACITY:
        [alarm] = [a for a in alarms.alarms(T) if a.key == f"capacity-{kind.lower()}"]
        assert alarm.threshold == 80 and alarm.comparison == "GreaterThanThreshold"
        allocated, total = alarm.metrics
        assert allocated.dimensions["filter"] == "allocated" and total.dimensions["filter"] == "total"
        assert allocated.stat == total.stat == "Sum"
        assert alarm.expression == "IF(m1 > 0, 100 * m0 / m1, 0)"
    [storage] = [a for a in alarms.alarms(T) if a.key == "capacity-primarystorage"]
    assert storage.metrics[0].dimensions["type"] == "primary"


def test_a_silent_management_server_is_an_alarm():
    [alarm] = [a for a in alarms.alarms(T) if a.key == "management-unhealthy"]
    assert alarm.treat_missing_data == "breaching"
    [host] = [a for a in alarms.alarms(T) if a.key == "host-not-up"]
    assert host.expression == "m0 - m1" and host.threshold == 0
    assert [m.dimensions["filter"] for m in host.metrics] == ["total", "online"]


def test_database_storage_alarm_is_ten_percent_of_the_allocated_bytes():
    [alarm] = [a for a in alarms.alarms(T) if a.key == "database-storage"]
    assert alarm.threshold == int(20 * 1024 ** 3 * 0.1)
    assert alarm.metrics[0].dimensions == {"DBInstanceIdentifier": "cloudstack-dev-0a1b2c3d"}


def test_error_filter_matches_an_error_header_only():
    # [timestamp, level = "ERROR", ...]: the second space-delimited word of the event.
    fields = alarms.LOG_ERRORS_PATTERN.strip("[]").split(", ")
    assert fields[:2] == ["timestamp", 'level = "ERROR"']
    error = "2024-03-11T09:14:02,118 ERROR [c.c.a.ApiServer] (qtp-21:ctx-7f3b) (logid:8c1e0a77) failed"
    info = "2024-03-11T09:14:05,003 INFO  [o.a.c.f.j.i.AsyncJobManagerImpl] (API-Job-Executor-1) ERROR in text"
    assert error.split()[1] == "ERROR" and info.split()[1] != "ERROR"


def test_dashboard_is_valid_json_naming_only_produced_metrics():
    body = json.loads(alarms.dashboard_json(T, "eu-west-1"))
    produced = alarms.produced_metrics("dev")
    named = alarms.dashboard_metrics(body)
    assert named
    for namespace, name in named:
        assert name in produced[namespace], (namespace, name)
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert titles[:3] == ["Zone capacity allocated (%)", "KVM hosts by state", "Virtual machines"]
    for w in body["widgets"]:
        assert w["type"] == "metric" and w["properties"]["region"] == "eu-west-1"
        assert 0 <= w["x"] and w["x"] + w["width"] <= 24
        for series in w["properties"]["metrics"]:
            # [namespace, name, dim, value, ..., {options}] or [{expression}]
            assert isinstance(series[-1], dict)
            if isinstance(series[0], str):
                assert len(series) % 2 == 1
    # Every instance's memory and disk.
    memory = [s for w in body["widgets"] for s in w["properties"]["metrics"] if s[1:2] == ["mem_used_percent"]]
    assert [s[3] for s in memory] == ["i-router", "i-mgmt", "i-h0", "i-h1"]
    # Each from its role's namespace, where the agent of that role puts it.
    assert [s[0] for s in memory] == ["CloudStackEC2/dev/router", "CloudStackEC2/dev/management",
                                      "CloudStackEC2/dev/kvm-host", "CloudStackEC2/dev/kvm-host"]
    more = dataclasses.replace(T, more_instances=(("router-1", "overlay router 1", "i-r1"),
                                                  ("management-1", "management server 1", "i-m1")))
    assert alarms.instance_namespaces(more)[2:4] == [("i-r1", "CloudStackEC2/dev/router"),
                                                     ("i-m1", "CloudStackEC2/dev/management")]


def test_dashboard_expressions_refer_to_ids_it_defines():
    body = alarms.dashboard_body(T, "eu-west-1")
    for w in body["widgets"]:
        ids = {s[-1].get("id") for s in w["properties"]["metrics"] if isinstance(s[0], str)}
        for s in w["properties"]["metrics"]:
            if not isinstance(s[0], str):
                assert set(re.findall(r"\b[at]\d\b", s[0]["expression"])) <= ids


@pytest.mark.parametrize("partition, host", [("aws", "console.aws.amazon.com"), ("aws-cn", "console.amazonaws.cn")])
def test_dashboard_url(partition, host):
    assert alarms.dashboard_url(partition, "eu-west-1", "cloudstack-ec2-dev") == (
        f"https://eu-west-1.{host}/cloudwatch/home?region=eu-west-1#dashboards:name=cloudstack-ec2-dev")


# --- under the program -----------------------------------------------------------------------

def test_alarms_notify_the_encrypted_topic(dev):
    [topic] = dev.of_type("aws:sns/topic:Topic")
    key = dev.get("aws:kms/key:Key", "logs-key")
    assert topic.inputs["kmsMasterKeyId"] == key.state["arn"]
    # the deployment's alarms and the system status check alarms (components/resources/recovery.py)
    declared = [a for a in dev.of_type(ALARM) if a.name.startswith("alarms-")]
    assert len(declared) == len(alarms.alarms(T)) + 1  # dev has three hosts
    reboot, recover = ("arn:aws:automate:us-east-1:ec2:reboot", "arn:aws:automate:us-east-1:ec2:recover")
    acting = {"alarms-router-status-check": reboot, "alarms-management-status-check": reboot,
              "recovery-router": recover, "recovery-management": recover}
    everything = dev.of_type(ALARM)
    assert {a.name for a in everything} == {a.name for a in declared} | {"recovery-router", "recovery-management"}
    for alarm in everything:
        assert alarm.inputs["alarmActions"] == [*filter(None, [acting.get(alarm.name)]), topic.state["arn"]]
        assert alarm.inputs["okActions"] == [topic.state["arn"]]
        assert alarm.inputs["alarmDescription"]
    assert dev.outputs["alarmTopicArn"] == topic.state["arn"]
    assert dev.of_type("aws:sns/topicSubscription:TopicSubscription") == []


def test_alarm_email_subscribes(deploy):
    run = deploy(alarmEmail="ops@example.com")
    [sub] = run.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert sub.inputs["protocol"] == "email" and sub.inputs["endpoint"] == "ops@example.com"


def _matches(pattern: str, arn: str) -> bool:
    """IAM's ArnLike: `*` matches any run of characters, within one ARN component
    (IAM User Guide, "IAM JSON policy elements: Condition operators", ARN condition operators)."""
    return len(pattern.split(":", 5)) == len(arn.split(":", 5)) and all(
        fnmatch.fnmatchcase(a, p) for p, a in zip(pattern.split(":", 5), arn.split(":", 5)))


def test_the_topic_admits_the_accounts_alarms_and_iam_only(dev):
    [topic] = dev.of_type("aws:sns/topic:Topic")
    arn = topic.state["arn"]
    [attached] = dev.of_type("aws:sns/topicPolicy:TopicPolicy")
    assert attached.inputs["arn"] == arn
    policy = json.loads(attached.inputs["policy"])
    account = arn.split(":")[4]
    # No statement for everyone: SNS's default policy (Principal "*") lets every principal of
    # the account delete the topic or subscribe to it whatever its IAM policies say.
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and statement["Resource"] == arn
        assert statement["Principal"] not in ("*", {"AWS": "*"}), statement
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["AccountManagesThroughIam"]["Principal"] == {"AWS": f"arn:aws:iam::{account}:root"}
    assert "sns:DeleteTopic" in by_sid["AccountManagesThroughIam"]["Action"]
    [publish] = [s for s in policy["Statement"] if "Service" in s["Principal"]]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and publish["Action"] == "sns:Publish"
    assert publish["Condition"]["StringEquals"] == {"aws:SourceAccount": account}
    [source] = publish["Condition"]["ArnLike"].values()
    assert list(publish["Condition"]["ArnLike"]) == ["aws:SourceArn"]
    # Every alarm of the deployment may publish; an alarm of another account or region may not.
    for alarm in dev.of_type(ALARM):
        assert _matches(source, f"arn:aws:cloudwatch:us-east-1:{account}:alarm:{alarm.name}-0a1b2c3"), alarm.name
    assert not _matches(source, "arn:aws:cloudwatch:us-east-1:210987654321:alarm:alarms-host-not-up-0a1b2c3")
    assert not _matches(source, f"arn:aws:cloudwatch:eu-west-1:{account}:alarm:alarms-host-not-up-0a1b2c3")
    # The alarms are the topic's only publishers: nothing else names it but its policy, its
    # subscriptions and the stack output.
    naming = {r.type for r in dev.registrations if r.urn != topic.urn and arn in set(dev.strings(r.inputs))}
    assert naming == {ALARM, "aws:sns/topicPolicy:TopicPolicy"}
    # The topic's key lets that same principal use it for this topic (an encrypted topic needs both).
    key = dev.get("aws:kms/key:Key", "logs-key")
    [use] = [s for s in json.loads(key.inputs["policy"])["Statement"] if s["Principal"] == publish["Principal"]]
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(use["Action"])
    assert _matches(use["Condition"]["ArnLike"]["kms:EncryptionContext:aws:sns:topicArn"], arn)


def test_topic_policy_names_the_partitions_arns():
    policy = alarms.topic_policy("aws-cn", "cn-north-1", "123456789012", "arn:aws-cn:sns:cn-north-1:123456789012:t",
                                 "cloudwatch.amazonaws.com.cn")
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["AccountManagesThroughIam"]["Principal"] == {"AWS": "arn:aws-cn:iam::123456789012:root"}
    assert by_sid["CloudWatchAlarmsOfTheAccountPublish"]["Condition"]["ArnLike"] == {
        "aws:SourceArn": "arn:aws-cn:cloudwatch:cn-north-1:123456789012:alarm:*"}


def test_alarms_watch_the_real_instances_and_database(dev):
    by_name = {a.name: a for a in dev.of_type(ALARM)}
    router = by_name["alarms-router-status-check"]
    assert router.inputs["dimensions"] == {"InstanceId": dev.outputs["router"]["instanceId"]}
    hosts = [by_name[f"alarms-kvm-host-{i}-status-check"].inputs["dimensions"]["InstanceId"] for i in range(3)]
    assert hosts == [dev.outputs["hosts"][str(i)]["instanceId"] for i in range(3)]
    db = dev.get("aws:rds/instance:Instance", "database-mysql")
    assert by_name["alarms-database-cpu"].inputs["dimensions"] == {"DBInstanceIdentifier": db.inputs["identifier"]}
    capacity = by_name["alarms-capacity-cpu"]
    assert "metricName" not in capacity.inputs or capacity.inputs["metricName"] is None
    queries = capacity.inputs["metricQueries"]
    assert [q["id"] for q in queries] == ["e0", "m0", "m1"]
    assert queries[1]["metric"]["namespace"] == "CloudStackEC2/dev"


def test_error_count_comes_from_the_management_log_group(dev):
    [metric_filter] = dev.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")
    assert metric_filter.inputs["logGroupName"] == dev.get("aws:cloudwatch/logGroup:LogGroup", "logs-management").inputs["name"]
    assert metric_filter.inputs["metricTransformation"]["name"] == alarms.LOG_ERRORS_METRIC
    assert metric_filter.inputs["metricTransformation"]["namespace"] == "CloudStackEC2/dev"


def test_takeovers_are_counted_and_alarmed_only_with_two_routers(dev, deploy):
    assert not [a for a in dev.of_type(ALARM) if a.name == "alarms-router-pair-takeover"]
    assert len(dev.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")) == 1
    pair = deploy(routerCount=2)
    [topic] = pair.of_type("aws:sns/topic:Topic")
    alarm = pair.get(ALARM, "alarms-router-pair-takeover")
    assert alarm.inputs["alarmActions"] == [topic.state["arn"]] == alarm.inputs["okActions"]
    assert alarm.inputs["metricName"] == alarms.ROUTER_TAKEOVER_METRIC
    assert alarm.inputs["namespace"] == "CloudStackEC2/dev"
    takeovers = pair.get("aws:cloudwatch/logMetricFilter:LogMetricFilter", "alarms-router-pair-takeovers")
    router_group = pair.get("aws:cloudwatch/logGroup:LogGroup", "logs-router").inputs["name"]
    assert takeovers.inputs["logGroupName"] == router_group
    assert takeovers.inputs["pattern"] == alarms.ROUTER_TAKEOVER_PATTERN
    assert takeovers.inputs["metricTransformation"]["name"] == alarms.ROUTER_TAKEOVER_METRIC
    assert takeovers.inputs["metricTransformation"]["namespace"] == "CloudStackEC2/dev"
    for run, shipped in ((dev, False), (pair, True)):
        value = run.get("aws:ssm/parameter:Parameter", "logs-agent-router").inputs["value"]
        value = value["value"] if isinstance(value, dict) else value  # secret-wrapped under the mocks
        assert (monitoring.ROUTER_PAIR_LOG in value) == shipped


def test_dashboard_of_the_program_names_only_produced_metrics(dev):
    [dashboard] = dev.of_type("aws:cloudwatch/dashboard:Dashboard")
    body = json.loads(dashboard.inputs["dashboardBody"])
    produced = alarms.produced_metrics("dev")
    assert all(name in produced[ns] for ns, name in alarms.dashboard_metrics(body))
    assert dev.outputs["dashboardUrl"] == (
        "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name=cloudstack-ec2-dev")
    assert monitoring.namespace("dev") in {ns for ns, _ in alarms.dashboard_metrics(body)}


# --- status checks of the routers and management servers -------------------------------------

def status_alarms(d, instance_id: str) -> dict[str, object]:
    """Every alarm on an EC2 status check of the instance, by metric."""
    found = [a for a in d.of_type(ALARM) if a.inputs.get("namespace") == "AWS/EC2"
             and str(a.inputs.get("metricName")).startswith("StatusCheckFailed")
             and (a.inputs.get("dimensions") or {}).get("InstanceId") == instance_id]
    by_metric = {a.inputs["metricName"]: a for a in found}
    assert len(by_metric) == len(found), [a.name for a in found]
    return by_metric


def test_each_router_and_management_server_has_one_system_and_one_instance_check_alarm(deploy):
    d = deploy(routerCount=2, managementServerCount=2)
    [topic] = d.of_type("aws:sns/topic:Topic")
    arn = topic.state["arn"]
    for name in ("router", "router-1", "management", "management-1"):
        found = status_alarms(d, d.instance(name).id)
        assert sorted(found) == ["StatusCheckFailed_Instance", "StatusCheckFailed_System"], name
        system, instance = found["StatusCheckFailed_System"], found["StatusCheckFailed_Instance"]
        assert (system.name, instance.name) == (f"recovery-{name}", f"alarms-{name}-status-check")
        # the URNs an earlier version declared them under: an update changes them in place
        assert system.urn.endswith(f"::cloudstack-ec2:index:RecoveryAlarms$aws:cloudwatch/metricAlarm:MetricAlarm"
                                   f"::recovery-{name}")
        assert instance.urn.endswith(f"::cloudstack-ec2:index:DeploymentAlarms$aws:cloudwatch/metricAlarm:MetricAlarm"
                                     f"::alarms-{name}-status-check")
        assert system.inputs["alarmActions"] == ["arn:aws:automate:us-east-1:ec2:recover", arn]
        assert instance.inputs["alarmActions"] == ["arn:aws:automate:us-east-1:ec2:reboot", arn]
        for alarm in (system, instance):
            assert alarm.inputs["okActions"] == [arn]
            assert alarm.inputs["treatMissingData"] == "missing"
            assert (alarm.inputs["period"], alarm.inputs["threshold"]) == (60, 1)
            # the topic exists before any alarm that notifies it
            assert topic.urn in alarm.dependencies, alarm.name
        # different evaluation periods: no race between the recover and the reboot action
        assert (system.inputs["evaluationPeriods"], instance.inputs["evaluationPeriods"]) == (2, 3)
    for host in d.host_instances():
        [alarm] = status_alarms(d, host.id).values()
        assert alarm.inputs["metricName"] == "StatusCheckFailed" and alarm.inputs["alarmActions"] == [arn]


def test_a_type_without_the_recover_action_is_still_notified_and_rebooted(deploy):
    d = deploy(managementInstanceType="m8i.xlarge")
    [topic] = d.of_type("aws:sns/topic:Topic")
    found = status_alarms(d, d.instance("management").id)
    assert found["StatusCheckFailed_System"].inputs["alarmActions"] == [topic.state["arn"]]
    assert "No recover action" in found["StatusCheckFailed_System"].inputs["alarmDescription"]
    assert found["StatusCheckFailed_Instance"].inputs["alarmActions"] == [
        "arn:aws:automate:us-east-1:ec2:reboot", topic.state["arn"]]


def test_the_system_and_instance_check_alarms_of_the_model():
    system = alarms.system_check_alarm("router-1", "i-1", "c5n.large")
    instance = alarms.instance_check_alarm("router-1", alarms.instance_label("router-1"), "i-1")
    assert (system.key, system.ec2_action, instance.key, instance.ec2_action) == (
        "router-1", "recover", "router-1-status-check", "reboot")
    assert "overlay router 1 (i-1, c5n.large)" in system.description
    assert alarms.system_check_alarm("management", "i-2", "m8i.xlarge").ec2_action is None
    assert instance.evaluation_periods != system.evaluation_periods
    assert alarms.more_instances(2, 3) == [("router-1", "overlay router 1"), ("management-1", "management server 1"),
                                           ("management-2", "management server 2")]
    assert alarms.more_instances(1, 1) == []
