"""What the deployment sends to CloudWatch, as data: the log groups of each role, the key
that encrypts them, what each instance role may write, the CloudWatch agent's
configuration of each role and the Session Manager preferences document.

Pure module (no Pulumi import): components/resources/monitoring.py declares it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional

from components.model.aws_constraints import LOG_GROUP_NAME, LOG_RETENTION_DAYS

#: The log groups the stack creates, one per kind of source: each instance role writes
#: only its own; "sessions" holds Session Manager sessions (every role writes it).
ROLES = ("management", "kvm-host", "router", "sessions")
#: Roles that run the CloudWatch agent (an instance role each).
AGENT_ROLES = ("management", "kvm-host", "router")

#: The namespaces, per stack: `CloudStackEC2/<stack>` holds CloudStack's metrics, which the
#: alarms read (the exporter's, extracted by CloudWatch Logs from the management group's
#: embedded-metric-format events, and the log metric filters' counts), and no instance role
#: may put metrics into it; `CloudStackEC2/<stack>/<role>` holds the agent's own metrics
#: (memory, disk) of that role's instances, and only that role may put into it
#: (cloudwatch:namespace condition key, CloudWatch User Guide "Using condition keys to limit
#: access to CloudWatch namespaces"). That bounds PutMetricData only: CloudWatch Logs
#: extracts an event in embedded metric format written to any log group into the namespace
#: the event names, without that permission (CloudWatch User Guide, "Using the PutLogEvents
#: API to send manually-created embedded metric format logs"); README "Isolation", "What remains".
NAMESPACE_PREFIX = "CloudStackEC2"

#: Where CloudStack's Prometheus exporter listens (prometheus.exporter.port, default 9595,
#: plugins/integrations/prometheus PrometheusExporterServer.java). The agent scrapes it on
#: the loopback address, the exporter's default and only allowed client
#: (prometheus.exporter.allowed.ips, compared with the request's source address).
EXPORTER_PORT = 9595
EXPORTER_CLIENT = "127.0.0.1"

#: A CloudStack log line starts with log4j's ISO8601 date: log4j2's `%d{ISO8601}`
#: (yyyy-MM-dd'T'HH:mm:ss,SSS; client/conf/log4j-cloud.xml.in, management-server.log and
#: apilog.log) or log4j 1's (yyyy-MM-dd HH:mm:ss,SSS; agent/conf/log4j-cloud.xml.in,
#: agent.log). Every other line (a stack trace's "\tat ...", "Caused by: ...") continues
#: the event before it, so a Java stack trace is one CloudWatch event. RE2 syntax, which
#: the agent's multi_line_start_pattern takes (Go regexp).
LOG4J_START = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2},\d{3} "

#: Where the boot scripts log (userdata/common.sh CSEC2_LOG_FILE) and cloud-init's copy.
BOOT_LOGS = ("/var/log/cloudstack-ec2-boot.log", "/var/log/cloud-init-output.log")
#: The router's log of the packets its tenant firewall drops (rate-limited: see router.sh).
ROUTER_DROP_LOG = "/var/log/cloudstack-ec2/router-drops.log"
#: The router pair's log (userdata/router.sh PAIR_LOG: keepalived's state changes and the
#: takeovers of the AWS side); shipped only when routerCount is 2.
ROUTER_PAIR_LOG = "/var/log/cloudstack-ec2-router-pair.log"
#: Where the management server's scrape configuration for the agent goes (prometheus.yaml).
PROMETHEUS_CONFIG_PATH = "/etc/cloudstack-ec2/cloudwatch-prometheus.yaml"


@dataclass(frozen=True)
class LogFile:
    path: str
    #: The log4j start pattern (True) or every line an event (False).
    multi_line: bool = False


#: What each role's agent ships, file by file (CloudStack's paths: the Debian packages'
#: /var/log/cloudstack/{management,usage,agent}).
LOG_FILES: dict[str, tuple[LogFile, ...]] = {
    "management": (
        LogFile("/var/log/cloudstack/management/management-server.log", True),
        LogFile("/var/log/cloudstack/management/apilog.log", True),
        LogFile("/var/log/cloudstack/management/access.log"),
        LogFile("/var/log/cloudstack/usage/usage.log", True),
        *(LogFile(p) for p in BOOT_LOGS),
    ),
    "kvm-host": (
        LogFile("/var/log/cloudstack/agent/agent.log", True),
        *(LogFile(p) for p in BOOT_LOGS),
    ),
    "router": (
        LogFile(ROUTER_DROP_LOG),
        *(LogFile(p) for p in BOOT_LOGS),
    ),
}


def namespace(stack: str) -> str:
    """`CloudStackEC2/<stack>`: the CloudWatch namespace of CloudStack's metrics, which the
    alarms read; no instance role may put metrics into it."""
    return f"{NAMESPACE_PREFIX}/{stack}"


def agent_namespace(stack: str, role: str) -> str:
    """`CloudStackEC2/<stack>/<role>`: the namespace of the agent's own metrics of `role`'s
    instances (AGENT_ROLES), the only one that role may put metrics into. ValueError for
    another role."""
    if role not in AGENT_ROLES:
        raise ValueError(f"agent role {role!r} is not one of {', '.join(AGENT_ROLES)}")
    return f"{namespace(stack)}/{role}"


def log_group_name(root: str, role: str) -> str:
    """`<parameter root>/<role>` (root from naming.parameter_root: unique per deployment).

    Raises ValueError for an unknown role or a name CloudWatch Logs refuses."""
    if role not in ROLES:
        raise ValueError(f"log group role {role!r} is not one of {', '.join(ROLES)}")
    name = f"{root}/{role}"
    problems = LOG_GROUP_NAME.problems(name)
    if problems:
        raise ValueError(f"log group name {name!r}: {'; '.join(problems)} [{LOG_GROUP_NAME.source}]")
    return name


def agent_parameter_name(root: str, role: str) -> str:
    """`<root>/cloudwatch-agent/<role>`: the SSM parameter of `role`'s agent configuration."""
    if role not in AGENT_ROLES:
        raise ValueError(f"agent role {role!r} is not one of {', '.join(AGENT_ROLES)}")
    return f"{root}/cloudwatch-agent/{role}"


def check_retention(days: int) -> int:
    """`days` if CloudWatch Logs accepts it as retentionInDays (PutRetentionPolicy), else ValueError."""
    if days not in LOG_RETENTION_DAYS:
        raise ValueError(f"log retention {days!r} days is not accepted: one of "
                         f"{', '.join(map(str, LOG_RETENTION_DAYS))} (0: never expire)")
    return days


def log_group_arn(partition: str, region: str, account: str, name: str) -> str:
    """arn:<partition>:logs:<region>:<account>:log-group:<name> (Service Authorization
    Reference, Amazon CloudWatch Logs resource types)."""
    return f"arn:{partition}:logs:{region}:{account}:log-group:{name}"


def logs_key_policy(partition: str, account: str, logs_principal: str, log_group_arn_pattern: str,
                    alarms_principal: str, region: str) -> dict:
    """The key policy of the key encrypting the deployment's log groups and its alarm topic.

    - The account administers the key through IAM (KMS Developer Guide, default key policy).
    - CloudWatch Logs of this region (`logs_principal`, `logs.<region>.amazonaws.com`) may
      use it only for the deployment's log groups: the condition on the encryption context
      `kms:EncryptionContext:aws:logs:arn` (CloudWatch Logs User Guide, "Encrypt log data in
      CloudWatch Logs using AWS Key Management Service", step 2).
    - CloudWatch alarms (`alarms_principal`, cloudwatch.amazonaws.com) may Decrypt and
      GenerateDataKey*, which they need to publish to an SNS topic encrypted with the key
      (SNS Developer Guide, "Configure AWS KMS permissions for AWS services": CloudWatch),
      and only for SNS topics of this account in `region`: SNS asks KMS with the encryption
      context `aws:sns:topicArn` (the key policies of AWS's guides for services that publish
      to encrypted topics condition on `kms:EncryptionContext:aws:sns:topicArn`, e.g.
      Amazon GameLift Servers FlexMatch Guide, "Set up an SNS topic with server-side encryption").
      Without it the service principal would use the key for any alarm of any account whose
      topic names this key, a confused deputy (IAM User Guide, "The confused deputy problem").
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AccountAdministersThroughIam", "Effect": "Allow",
             "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "CloudWatchLogsForTheDeploymentsLogGroups", "Effect": "Allow",
             "Principal": {"Service": logs_principal},
             "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
             "Resource": "*",
             "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_group_arn_pattern}}},
            {"Sid": "CloudWatchAlarmsPublishToTheEncryptedTopic", "Effect": "Allow",
             "Principal": {"Service": alarms_principal},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
             "Condition": {"ArnLike": {
                 "kms:EncryptionContext:aws:sns:topicArn": f"arn:{partition}:sns:{region}:{account}:*"}}},
        ],
    }


@dataclass(frozen=True)
class Statement:
    """One IAM statement of an instance role (components/resources/node.py Grant)."""

    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: Optional[dict] = None


def agent_statements(role: str, group_arn: str, sessions_arn: str, config_parameter_arn: str, stack: str,
                     all_groups_arn: str) -> tuple[Statement, ...]:
    """What `role`'s instances may do for CloudWatch: write log streams of their own log
    group (`group_arn`) and of the sessions group, read their agent configuration, put
    metrics into their role's namespace only (agent_namespace, never namespace(stack), the
    one the alarms read); and list log groups (`all_groups_arn`,
    `...:log-group:*`), which the SSM agent needs to check that the sessions group is
    encrypted before it streams a session into it (Session Manager User Guide, "Logging
    session data using Amazon CloudWatch Logs"). Instead of CloudWatchAgentServerPolicy,
    which allows logs:CreateLogGroup and PutLogEvents on every log group and
    ssm:GetParameter on every AmazonCloudWatch-* parameter."""
    streams = tuple(f"{arn}:log-stream:*" for arn in (group_arn, sessions_arn))
    return (
        Statement(("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"),
                  (group_arn, sessions_arn, *streams)),
        Statement(("logs:DescribeLogGroups",), (all_groups_arn,)),
        Statement(("ssm:GetParameter",), (config_parameter_arn,)),
        # PutMetricData takes no resource (Service Authorization Reference): the namespace
        # condition is the restriction.
        Statement(("cloudwatch:PutMetricData",), ("*",),
                  {"StringEquals": {"cloudwatch:namespace": agent_namespace(stack, role)}}),
    )


def session_document(log_group: str) -> dict:
    """Session Manager preferences (a document of type Session, schema 1.0: Session Manager
    User Guide, "Session document schema"): every session's data streamed to `log_group`,
    which must be encrypted (the SSM agent refuses to start the session otherwise).

    A document of the stack's own, not the account's `SSM-SessionManagerRunShell`: that one
    holds the preferences of every session of the account and region, which a stack must
    not overwrite (nor delete with itself). Sessions use it with
    `aws ssm start-session --document-name <name>`; an operator's IAM policy can require
    it (ssm:StartSession on the document with ssm:SessionDocumentAccessCheck)."""
    return {
        "schemaVersion": "1.0",
        "description": "cloudstack-ec2 sessions, logged to CloudWatch Logs (encrypted)",
        "sessionType": "Standard_Stream",
        "inputs": {
            "s3BucketName": "", "s3KeyPrefix": "", "s3EncryptionEnabled": True,
            "cloudWatchLogGroupName": log_group, "cloudWatchEncryptionEnabled": True,
            "cloudWatchStreamingEnabled": True,
            "kmsKeyId": "", "runAsEnabled": False, "runAsDefaultUser": "",
            "idleSessionTimeout": "20", "maxSessionDuration": "",
            "shellProfile": {"windows": "", "linux": ""},
        },
    }


_DOCUMENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,128}$")


def session_document_name(root: str) -> str:
    """`cloudstack-ec2-<stack>-<deployment id>-sessions` from the parameter root (SSM
    CreateDocument Name: [a-zA-Z0-9_\\-.]{3,128}, not starting with aws or amazon)."""
    name = root.strip("/").replace("/", "-") + "-sessions"
    if not _DOCUMENT_NAME.match(name) or name.lower().startswith(("aws", "amazon")):
        raise ValueError(f"session document name {name!r} is not accepted by SSM ([a-zA-Z0-9_.-]{{3,128}})")
    return name


# ------------------------------------------------------------------ agent configuration ----

#: Metrics of CloudStack's exporter turned into CloudWatch metrics, each with the
#: dimensions kept (the exporter's labels; PrometheusExporterImpl.java: cloudstack_hosts_total
#: {zone, filter=online|offline|total}, cloudstack_vms_total {zone, filter=<VM state>},
#: cloudstack_host_cpu_usage_mhz_total and cloudstack_host_memory_usage_mibs_total
#: {zone, filter=allocated} per zone and {filter=used|total, hostname, ...} per host,
#: cloudstack_storage_pool_gibs_total {zone, type=primary|secondary, filter, ...},
#: cloudstack_public_ips_total {zone, filter=allocated|total}). Series of several hosts or
#: pools share the kept dimensions: CloudWatch's Sum over a scrape interval adds them up.
EXPORTED_METRICS: dict[str, tuple[str, ...]] = {
    "cloudstack_hosts_total": ("zone", "filter"),
    "cloudstack_vms_total": ("zone", "filter"),
    "cloudstack_host_cpu_usage_mhz_total": ("zone", "filter"),
    "cloudstack_host_memory_usage_mibs_total": ("zone", "filter"),
    "cloudstack_storage_pool_gibs_total": ("zone", "type", "filter"),
    "cloudstack_public_ips_total": ("zone", "filter"),
}
#: How often the agent collects (seconds): metrics, and the exporter's scrape.
INTERVAL_SECONDS = 60
#: The Prometheus job name the agent's EMF processor matches.
PROMETHEUS_JOB = "cloudstack"


def agent_config(role: str, log_group: str, stack: str, router_pair: bool = False) -> dict:
    """The CloudWatch agent's JSON configuration of `role` (CloudWatch User Guide,
    "Manually create or edit the CloudWatch agent configuration file"; checked against the
    agent's schema, translator/config/schema.json of aws/amazon-cloudwatch-agent).

    Logs: each of LOG_FILES[role] into `log_group`, one stream per instance and file; memory
    and root-disk use per instance into agent_namespace(stack, role); on the management server
    also CloudStack's exporter as embedded-metric-format events in `log_group`, from which
    CloudWatch extracts EXPORTED_METRICS into namespace(stack), the alarms' (the scrape
    configuration at PROMETHEUS_CONFIG_PATH is userdata/cloudwatch-agent.sh's).
    `router_pair` (routerCount 2): the router also ships ROUTER_PAIR_LOG, whose takeovers
    the router-pair-takeover alarm counts (components/model/alarms.py).
    The agent runs as root: CloudStack's logs are readable by root only."""
    if role not in AGENT_ROLES:
        raise ValueError(f"agent role {role!r} is not one of {', '.join(AGENT_ROLES)}")
    shipped = LOG_FILES[role] + ((LogFile(ROUTER_PAIR_LOG),) if router_pair and role == "router" else ())
    files = [{
        "file_path": f.path, "log_group_name": log_group,
        "log_stream_name": "{instance_id}" + f.path.replace("/var/log", "", 1),
        **({"multi_line_start_pattern": LOG4J_START} if f.multi_line else {}),
    } for f in shipped]
    logs: dict = {"logs_collected": {"files": {"collect_list": files}}, "force_flush_interval": 15}
    if role == "management":
        logs["metrics_collected"] = {"prometheus": {
            "log_group_name": log_group, "prometheus_config_path": PROMETHEUS_CONFIG_PATH,
            "emf_processor": {"metric_namespace": namespace(stack), "metric_declaration": [{
                "source_labels": ["job"], "label_matcher": f"^{PROMETHEUS_JOB}$",
                "dimensions": [list(dims)], "metric_selectors": [f"^{name}$"],
            } for name, dims in EXPORTED_METRICS.items()]}}}
    return {
        # No "host" dimension: the metrics carry InstanceId only, which alarms and the
        # dashboard name (the hostname would split them by a value the stack does not know).
        "agent": {"metrics_collection_interval": INTERVAL_SECONDS, "run_as_user": "root", "omit_hostname": True},
        "metrics": {
            "namespace": agent_namespace(stack, role),
            "append_dimensions": {"InstanceId": "${aws:InstanceId}"},
            "aggregation_dimensions": [["InstanceId"]],
            "metrics_collected": {
                "mem": {"measurement": ["mem_used_percent"]},
                "disk": {"measurement": ["used_percent"], "resources": ["/"],
                         "drop_device": True},
            },
        },
        "logs": logs,
    }


def agent_config_json(role: str, log_group: str, stack: str, router_pair: bool = False) -> str:
    """agent_config as the SSM parameter holds it (compact JSON)."""
    return json.dumps(agent_config(role, log_group, stack, router_pair), separators=(",", ":"), sort_keys=True)


# ------------------------------------------------------------------------------ cost ----

#: Estimated log volume a day (GB) of one instance of each role. CloudStack logs its own
#: packages at DEBUG (client/conf/log4j-cloud.xml.in: com.cloud, org.apache.cloudstack;
#: agent/conf/log4j-cloud.xml.in: com.cloud), so even an idle management server writes
#: hundreds of MB a day; the exporter's scrape adds an event per metric a minute. An
#: estimate for the plan, not a measurement: the bill follows what is really written.
LOG_GB_PER_DAY = {"management": 0.5, "kvm-host": 0.05, "router": 0.01}

#: The CloudWatch series each exported metric becomes (one per value of its kept
#: dimensions, PrometheusExporterImpl.java): hosts online/offline/total; VMs by
#: VirtualMachine.State (13 states, every one reported); CPU and memory allocated/used/
#: total; primary storage used/allocated/unallocated/total and secondary used/total;
#: public IPs allocated/total.
EXPORTED_SERIES = {"cloudstack_hosts_total": 3, "cloudstack_vms_total": 13,
                   "cloudstack_host_cpu_usage_mhz_total": 3, "cloudstack_host_memory_usage_mibs_total": 3,
                   "cloudstack_storage_pool_gibs_total": 6, "cloudstack_public_ips_total": 2}
#: Per instance: mem_used_percent, and disk_used_percent per root file system and aggregated.
AGENT_SERIES_PER_INSTANCE = 3


def log_gb_per_day(host_count: int, router_count: int = 1, management_count: int = 1) -> float:
    """Estimated GB a day the deployment's instances send to CloudWatch Logs: each
    instance of each role its LOG_GB_PER_DAY."""
    return (management_count * LOG_GB_PER_DAY["management"] + router_count * LOG_GB_PER_DAY["router"]
            + host_count * LOG_GB_PER_DAY["kvm-host"])


def custom_metric_count(host_count: int, router_count: int = 1, management_count: int = 1) -> int:
    """The custom metrics (billed per metric-month) the deployment puts into its namespaces:
    the exporter's series (one set for the zone, whichever server reports them), the agent's
    per instance, the management log's error count and, with a router pair, its takeover count."""
    instances = router_count + management_count + host_count
    return (sum(EXPORTED_SERIES.values()) + AGENT_SERIES_PER_INSTANCE * instances + 1
            + (1 if router_count == 2 else 0))

