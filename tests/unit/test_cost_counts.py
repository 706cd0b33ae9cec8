"""The cost estimate counts what the program declares: every CloudWatch alarm metric and every
Secrets Manager secret of the stack, for stacks of one and two routers, with and without a
directory (LDAP, LDAPS) and with one and three management servers."""

from __future__ import annotations

import json
import re

import pytest
from tests.unit.conftest import Deployed, run_program

from components.model import catalog

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
SECRET = "aws:secretsmanager/secret:Secret"
CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ==\n-----END CERTIFICATE-----"
LDAP = {"provider": "openldap", "servers": [{"host": "ldap.example.com"}], "baseDn": "dc=example,dc=com",
        "bindPrincipal": "cn=cloudstack,dc=example,dc=com", "bindPassword": "Bind-Passw0rd-of-the-test"}

STACKS = {
    "one router, one server": {},
    "two routers, LDAPS, three servers": {"routerCount": 2, "managementServerCount": 3,
                                          "ldap": {**LDAP, "ldaps": True, "caCertificate": CA}},
    "two routers, LDAP": {"routerCount": 2, "ldap": LDAP},
    "one router, three servers, LDAPS": {"managementServerCount": 3,
                                         "ldap": {**LDAP, "ldaps": True, "caCertificate": CA}},
}


@pytest.fixture(scope="module", params=sorted(STACKS))
def stack(request) -> Deployed:
    overrides = dict(STACKS[request.param])
    if "ldap" in overrides:
        overrides["ldap"] = json.dumps(overrides["ldap"])
    return run_program(overrides, secret_keys=["ldap"] if "ldap" in overrides else [])


def quantity(estimate: catalog.CostEstimate, item: str) -> int:
    [line] = [line for line in estimate.lines if line.item == item]
    return line.quantity


def alarm_metrics(alarm) -> int:
    """What CloudWatch bills of one alarm: one metric, or each metric of its expression."""
    queries = alarm.inputs.get("metricQueries") or []
    return sum(1 for q in queries if q.get("metric")) if queries else 1


def test_the_cost_counts_every_declared_alarm_metric(stack):
    declared = stack.of_type(ALARM)
    assert declared
    estimate = catalog.estimate(stack.run.result.settings)
    assert quantity(estimate, "CloudWatch alarm metrics") == sum(alarm_metrics(a) for a in declared)
    assert not [line for line in estimate.lines if line.item == "CloudWatch recovery alarms"]


def test_the_cost_counts_every_secret_the_stack_has(stack):
    # The stack's own secrets, and the master user's, which RDS creates and bills alike
    # (RDS User Guide, "Password management with Amazon RDS and AWS Secrets Manager").
    [database] = stack.of_type("aws:rds/instance:Instance")
    assert database.inputs["manageMasterUserPassword"] is True
    declared = len(stack.of_type(SECRET)) + 1
    settings = stack.run.result.settings
    assert quantity(catalog.estimate(settings), "Secrets Manager secrets") == declared
    expected = 5 + (settings.ldap is not None) + 2 * bool(settings.ldap and settings.ldap.ldaps)
    assert declared == expected


def test_a_urn_declared_twice_stops_the_run_as_the_engine_does():
    import pulumi
    import pulumi_aws as aws

    from components.cli import offline

    class Result:
        outputs: dict = {}

    def program():
        for _ in range(2):
            aws.sns.Topic("twice")
        pulumi.export("done", True)
        return Result()

    urn = "urn:pulumi:dev::cloudstack-ec2::pulumi:pulumi:Stack$aws:sns/topic:Topic::twice"
    with pytest.raises(offline.DuplicateUrnError,
                       match=re.escape(f"Duplicate resource URN '{urn}'; try giving it a unique name")):
        offline.run_offline(program, {}, project="cloudstack-ec2", stack="dev", region="us-east-1")


def test_the_cost_counts_every_kms_key_the_stack_declares(stack):
    declared = stack.of_type("aws:kms/key:Key")
    assert len(declared) == 2
    estimate = catalog.estimate(stack.run.result.settings)
    [line] = [line for line in estimate.lines if line.item.startswith("KMS key")]
    assert line.quantity == len(declared)
