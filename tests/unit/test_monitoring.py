"""What the deployment sends to CloudWatch (components/model/monitoring.py), checked directly,
and the log groups, key, agent parameters and role grants the program declares from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from components.model import monitoring
from components.model.aws_constraints import LOG_RETENTION_DAYS
from components.model.settings import SettingsError, parse_settings

#: The CloudWatch agent's configuration schema, translator/config/schema.json of
#: aws/amazon-cloudwatch-agent at commit ab55b8daa204e95c42c0267ee5aa49ec3b3a7317 (the
#: schema the agent validates its JSON configuration with before translating it).
AGENT_SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "cloudwatch-agent-schema.json").read_text())

ROOT = "/cloudstack-ec2/dev/0a1b2c3d"

#: Lines as CloudStack writes them: headers by the log4j2 pattern of
#: client/conf/log4j-cloud.xml.in (`%d{ISO8601} %-5p [%c{1.}] (%t:%x) (logid:...) %m`) and the
#: log4j 1 pattern of agent/conf/log4j-cloud.xml.in (`%d{ISO8601} %-5p [%c{3}] (%t:%x) %m`),
#: and the continuation lines of a Java exception that follow a header.
HEADERS = (
    "2024-03-11T09:14:02,118 ERROR [c.c.a.ApiServer] (qtp1390835616-21:ctx-7f3b2c1e ctx-1a2b3c4d) "
    "(logid:8c1e0a77) unhandled exception executing api command: [Ljava.lang.String;@5b6d1e2f",
    "2024-03-11T09:14:05,003 INFO  [o.a.c.f.j.i.AsyncJobManagerImpl] (API-Job-Executor-1:ctx-0e1f2a3b job-42) "
    "(logid:9d0c1b2a) Executing AsyncJob {\"accountId\":2}",
    "2024-03-11 09:14:07,441 WARN  [kvm.resource.LibvirtComputingResource] (agentRequest-Handler-3:null) "
    "Failed to get vm stats",
    "2024-03-11 09:14:07,442 DEBUG [cloud.agent.Agent] (agentRequest-Handler-3:null) Processing command",
)
CONTINUATIONS = (
    "com.cloud.utils.exception.CloudRuntimeException: Failed to add host",
    "\tat com.cloud.resource.ResourceManagerImpl.discoverHostsFull(ResourceManagerImpl.java:812)",
    "\tat java.base/java.lang.Thread.run(Thread.java:840)",
    "Caused by: java.net.ConnectException: Connection refused",
    "\t... 42 more",
    "",
    # Timestamps inside a message never start an event.
    "  2024-03-11T09:14:02,118 ERROR quoted in a message",
)


def _re2_as_python(pattern: str) -> re.Pattern:
    """The agent's pattern (Go RE2) in Python: the constructs it uses (^, \\d, {n}, [..])
    mean the same in both."""
    assert not re.search(r"\(\?[<P=!]|\\[1-9]", pattern), "a construct RE2 does not have"
    return re.compile(pattern)


# --- log groups, retention, key ------------------------------------------------------------

def test_log_groups_per_role_under_the_deployment_root():
    assert [monitoring.log_group_name(ROOT, r) for r in monitoring.ROLES] == [
        f"{ROOT}/management", f"{ROOT}/kvm-host", f"{ROOT}/router", f"{ROOT}/sessions"]
    with pytest.raises(ValueError, match="not one of"):
        monitoring.log_group_name(ROOT, "database")


@pytest.mark.parametrize("days", LOG_RETENTION_DAYS)
def test_every_retention_cloudwatch_accepts_is_accepted(days):
    assert monitoring.check_retention(days) == days
    assert parse_settings({"adminCidrs": ["10.0.0.0/8"], "logRetentionDays": days}).log_retention_days == days


@pytest.mark.parametrize("days", [2, 31, 366, 3650, -1])
def test_a_retention_cloudwatch_refuses_is_a_settings_problem_naming_the_key(days):
    with pytest.raises(ValueError, match="not accepted"):
        monitoring.check_retention(days)
    with pytest.raises(SettingsError) as err:
        parse_settings({"adminCidrs": ["10.0.0.0/8"], "logRetentionDays": days})
    [problem] = err.value.problems
    assert problem.key == "logRetentionDays" and problem.value == days
    assert "3653" in problem.message


@pytest.mark.parametrize("address, ok", [("ops@example.com", True), ("", True), ("a.b+alarms@x.example.org", True),
                                         ("ops", False), ("ops@localhost", False), ("Ops <ops@example.com>", False),
                                         ("a@b.com,c@d.com", False)])
def test_alarm_email_is_one_address_or_empty(address, ok):
    if ok:
        assert parse_settings({"adminCidrs": ["10.0.0.0/8"], "alarmEmail": address}).alarm_email == address
    else:
        with pytest.raises(SettingsError) as err:
            parse_settings({"adminCidrs": ["10.0.0.0/8"], "alarmEmail": address})
        assert [p.key for p in err.value.problems] == ["alarmEmail"]


def test_key_policy_lets_cloudwatch_logs_use_the_key_only_for_the_deployments_groups():
    pattern = monitoring.log_group_arn("aws", "eu-west-1", "123456789012", f"{ROOT}/*")
    policy = monitoring.logs_key_policy("aws", "123456789012", "logs.eu-west-1.amazonaws.com", pattern,
                                        "cloudwatch.amazonaws.com", "eu-west-1")
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    logs = by_sid["CloudWatchLogsForTheDeploymentsLogGroups"]
    assert logs["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    assert logs["Condition"] == {"ArnLike": {
        "kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:eu-west-1:123456789012:log-group:{ROOT}/*"}}
    assert "kms:*" not in logs["Action"]
    alarms = by_sid["CloudWatchAlarmsPublishToTheEncryptedTopic"]
    assert sorted(alarms["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    # Only for SNS topics of the deployment's account and region: the context SNS gives the
    # key of a topic (aws:sns:topicArn), never another account's topic or another use.
    assert alarms["Condition"] == {"ArnLike": {
        "kms:EncryptionContext:aws:sns:topicArn": "arn:aws:sns:eu-west-1:123456789012:*"}}
    assert by_sid["AccountAdministersThroughIam"]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}


@pytest.mark.parametrize("role", monitoring.AGENT_ROLES)
def test_agent_statements_name_only_the_roles_groups_and_the_roles_namespace(role):
    statements = monitoring.agent_statements(role, "G", "S", "P", "dev", "ALL")
    writes = statements[0]
    assert set(writes.actions) == {"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"}
    assert set(writes.resources) == {"G", "S", "G:log-stream:*", "S:log-stream:*"}
    [metrics] = [s for s in statements if "cloudwatch:PutMetricData" in s.actions]
    # Its own namespace, never the one CloudStack's metrics (and so the alarms) are in.
    assert metrics.condition == {"StringEquals": {"cloudwatch:namespace": f"CloudStackEC2/dev/{role}"}}
    every_action = {a for s in statements for a in s.actions}
    assert not {"logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:*", "ssm:*"} & every_action


def test_agent_namespace_is_one_of_an_agent_role():
    assert monitoring.agent_namespace("dev", "kvm-host") == "CloudStackEC2/dev/kvm-host"
    with pytest.raises(ValueError, match="'sessions' is not one of management, kvm-host, router"):
        monitoring.agent_namespace("dev", "sessions")


def test_session_document_streams_encrypted_sessions_to_the_sessions_group():
    doc = monitoring.session_document(f"{ROOT}/sessions")
    assert doc["sessionType"] == "Standard_Stream" and doc["schemaVersion"] == "1.0"
    assert doc["inputs"]["cloudWatchLogGroupName"] == f"{ROOT}/sessions"
    assert doc["inputs"]["cloudWatchEncryptionEnabled"] is True
    assert doc["inputs"]["cloudWatchStreamingEnabled"] is True
    name = monitoring.session_document_name(ROOT)
    assert name == "cloudstack-ec2-dev-0a1b2c3d-sessions"
    assert name != "SSM-SessionManagerRunShell"


# --- the agent's configuration -------------------------------------------------------------

@pytest.mark.parametrize("router_pair", [False, True])
@pytest.mark.parametrize("role", monitoring.AGENT_ROLES)
def test_agent_configuration_is_valid_for_the_agents_schema(role, router_pair):
    config = json.loads(monitoring.agent_config_json(role, f"{ROOT}/{role}", "dev", router_pair))
    jsonschema.Draft4Validator(AGENT_SCHEMA).validate(config)


def test_only_the_router_of_a_pair_ships_the_pair_log():
    def paths(role, router_pair):
        files = monitoring.agent_config(role, f"{ROOT}/{role}", "dev", router_pair)["logs"]["logs_collected"]["files"]
        return {f["file_path"]: f for f in files["collect_list"]}
    pair = paths("router", True)
    assert pair[monitoring.ROUTER_PAIR_LOG]["log_group_name"] == f"{ROOT}/router"
    assert "multi_line_start_pattern" not in pair[monitoring.ROUTER_PAIR_LOG]
    assert set(pair) - set(paths("router", False)) == {monitoring.ROUTER_PAIR_LOG}
    assert all(monitoring.ROUTER_PAIR_LOG not in paths(role, pair) for role in monitoring.AGENT_ROLES
               for pair in (False, True) if role != "router" or not pair)


def test_the_schema_refuses_a_wrong_configuration():
    # The schema is a real check: a misspelt option is refused.
    config = monitoring.agent_config("router", f"{ROOT}/router", "dev")
    config["logs"]["logs_collected"]["files"]["collect_list"][0]["multiline_start_pattern"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(AGENT_SCHEMA).validate(config)


def test_each_role_ships_its_cloudstack_logs_and_its_boot_log():
    paths = {role: {f["file_path"] for f in monitoring.agent_config(role, "g", "dev")
                    ["logs"]["logs_collected"]["files"]["collect_list"]} for role in monitoring.AGENT_ROLES}
    assert {"/var/log/cloudstack/management/management-server.log", "/var/log/cloudstack/management/apilog.log",
            "/var/log/cloudstack/management/access.log", "/var/log/cloudstack/usage/usage.log",
            "/var/log/cloudstack-ec2-boot.log"} <= paths["management"]
    assert {"/var/log/cloudstack/agent/agent.log", "/var/log/cloudstack-ec2-boot.log"} <= paths["kvm-host"]
    assert {monitoring.ROUTER_DROP_LOG, "/var/log/cloudstack-ec2-boot.log"} <= paths["router"]


def test_multi_line_start_matches_every_cloudstack_header_and_no_continuation():
    start = _re2_as_python(monitoring.LOG4J_START)
    assert all(start.match(line) for line in HEADERS)
    assert not any(start.match(line) for line in CONTINUATIONS)


def test_a_stack_trace_is_one_event():
    start = _re2_as_python(monitoring.LOG4J_START)
    lines = [HEADERS[0], *CONTINUATIONS[:5], HEADERS[1]]
    events: list[list[str]] = []
    for line in lines:
        if start.match(line) or not events:
            events.append([line])
        else:
            events[-1].append(line)
    assert [len(e) for e in events] == [6, 1]


def test_java_logs_use_the_pattern_and_the_others_do_not():
    for role in monitoring.AGENT_ROLES:
        for entry in monitoring.agent_config(role, "g", "dev")["logs"]["logs_collected"]["files"]["collect_list"]:
            java = entry["file_path"].startswith("/var/log/cloudstack/") and not entry["file_path"].endswith("access.log")
            assert ("multi_line_start_pattern" in entry) == java, entry["file_path"]


def test_agent_metrics_go_to_the_roles_namespace_and_cloudstacks_to_the_stacks():
    for role in monitoring.AGENT_ROLES:
        config = monitoring.agent_config(role, "g", "dev")
        assert config["metrics"]["namespace"] == f"CloudStackEC2/dev/{role}"
        assert set(config["metrics"]["metrics_collected"]) == {"mem", "disk"}
    # The exporter's metrics reach CloudWatch through the management log group (embedded
    # metric format), not PutMetricData: no role needs to put into the stack's namespace.
    prometheus = monitoring.agent_config("management", "g", "dev")["logs"]["metrics_collected"]["prometheus"]
    assert prometheus["emf_processor"]["metric_namespace"] == "CloudStackEC2/dev"
    assert prometheus["log_group_name"] == "g"
    assert "metrics_collected" not in monitoring.agent_config("router", "g", "dev")["logs"]


#: Metric names the exporter writes (PrometheusExporterImpl.java, the Item classes' names).
EXPORTER_SOURCE_NAMES = {
    "cloudstack_vms_total", "cloudstack_vms_total_by_tag", "cloudstack_volumes_total", "cloudstack_hosts_total",
    "cloudstack_hosts_total_by_tag", "cloudstack_host_vms_cores_total", "cloudstack_host_cpu_usage_mhz_total",
    "cloudstack_host_memory_usage_mibs_total", "cloudstack_host_vms_total", "cloudstack_storage_pool_gibs_total",
    "cloudstack_private_ips_total", "cloudstack_public_ips_total", "cloudstack_shared_network_ips_total",
    "cloudstack_vlans_total", "cloudstack_domain_limit_cpu_cores_total", "cloudstack_domain_limit_memory_mibs_total",
    "cloudstack_host_is_dedicated", "cloudstack_active_domains_total", "cloudstack_host_dedicated_to_account",
    "cloudstack_domain_resource_limit", "cloudstack_domain_resource_count", "cloudstack_active_accounts_total",
    "cloudstack_vms_total_by_size",
}


def test_exported_metrics_are_names_the_exporter_writes():
    assert set(monitoring.EXPORTED_METRICS) <= EXPORTER_SOURCE_NAMES
    for dims in monitoring.EXPORTED_METRICS.values():
        assert "zone" in dims and "filter" in dims


# --- under the program -----------------------------------------------------------------------

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


def test_program_declares_encrypted_log_groups_with_the_retention(deploy):
    run = deploy(logRetentionDays=90)
    [key] = [r for r in run.of_type("aws:kms/key:Key") if r.name == "logs-key"]
    assert key.inputs["enableKeyRotation"] is True
    [alarms] = [s for s in json.loads(key.inputs["policy"])["Statement"]
                if s["Sid"] == "CloudWatchAlarmsPublishToTheEncryptedTopic"]
    [topics] = alarms["Condition"]["ArnLike"].values()
    assert re.fullmatch(r"arn:aws:sns:[a-z]{2}-[a-z]+-\d:\d{12}:\*", topics)
    groups = {r.name: r for r in run.of_type(LOG_GROUP) if r.name.startswith("logs-")}
    assert set(groups) == {f"logs-{r}" for r in monitoring.ROLES}
    for group in groups.values():
        assert group.inputs["retentionInDays"] == 90
        assert group.inputs["kmsKeyId"] == run.value(key, "arn")
        assert re.fullmatch(r"/cloudstack-ec2/dev/[0-9a-f]{8}/(management|kvm-host|router|sessions)",
                            group.inputs["name"])


def test_each_instance_role_writes_only_its_own_group_and_reads_its_agent_configuration(dev):
    groups = {r.name.removeprefix("logs-"): r.inputs["name"] for r in dev.of_type(LOG_GROUP) if r.name.startswith("logs-")}
    for component, role in (("router", "router"), ("management", "management"), ("kvm-host", "kvm-host")):
        statements = dev.policy_document(component)["Statement"]
        writes = [s for s in statements if "logs:PutLogEvents" in s["Action"]]
        assert len(writes) == 1
        named = {arn.split(":log-group:")[1].split(":")[0] for arn in writes[0]["Resource"]}
        assert named == {groups[role], groups["sessions"]}
        [metrics] = [s for s in statements if "cloudwatch:PutMetricData" in s["Action"]]
        assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": f"CloudStackEC2/dev/{role}"}}
        [config] = [s for s in statements if s["Action"] == ["ssm:GetParameter"] and
                    any("cloudwatch-agent" in r for r in s["Resource"])]
        assert [r.rsplit("/", 1)[1] for r in config["Resource"]] == [role]


def _namespaces(alarm) -> set[str]:
    """The namespaces an alarm reads: its metric's, or each of its metric queries'."""
    queries = alarm.inputs.get("metricQueries") or []
    return {q["metric"]["namespace"] for q in queries if q.get("metric")} or {alarm.inputs["namespace"]}


def test_no_instance_role_may_put_metrics_where_the_cloudstack_alarms_read(dev):
    read = {n for a in dev.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") for n in _namespaces(a)
            if not n.startswith("AWS/")}
    assert read == {"CloudStackEC2/dev"}
    for role in dev.of_type("aws:iam/rolePolicy:RolePolicy"):
        for statement in json.loads(role.inputs["policy"])["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if statement["Effect"] != "Allow" or not any(a in ("cloudwatch:PutMetricData", "cloudwatch:*", "*")
                                                         for a in actions):
                continue
            # Only under a namespace condition, never one the alarms read.
            allowed = statement["Condition"]["StringEquals"]["cloudwatch:namespace"]
            assert allowed not in read and allowed.startswith("CloudStackEC2/dev/"), role.name


def test_agent_configuration_parameters_hold_the_models_configuration(dev):
    params = {r.name: r for r in dev.of_type("aws:ssm/parameter:Parameter") if r.name.startswith("logs-agent-")}
    assert set(params) == {f"logs-agent-{r}" for r in monitoring.AGENT_ROLES}
    for role in monitoring.AGENT_ROLES:
        p = params[f"logs-agent-{role}"]
        assert p.inputs["type"] == "String"
        assert p.inputs["name"].endswith(f"/cloudwatch-agent/{role}")
        value = p.inputs["value"]  # pulumi_aws marks a Parameter's value secret: the mocks see it wrapped
        value = value["value"] if isinstance(value, dict) else value
        assert json.loads(value) == monitoring.agent_config(role, f"{p.inputs['name'].rsplit('/cloudwatch-agent/')[0]}/{role}", "dev")
        jsonschema.Draft4Validator(AGENT_SCHEMA).validate(json.loads(value))


def test_session_document_is_the_stacks_own(dev):
    [doc] = dev.of_type("aws:ssm/document:Document")
    assert doc.inputs["documentType"] == "Session"
    assert doc.inputs["name"] != "SSM-SessionManagerRunShell"
    content = json.loads(doc.inputs["content"])
    assert content["inputs"]["cloudWatchLogGroupName"].endswith("/sessions")
