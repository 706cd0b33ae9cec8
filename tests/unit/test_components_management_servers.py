"""Several management servers (managementServerCount) under Pulumi mocks: the first keeps the
single server's resources, the others share its secrets and publish nothing, the registration
lists them all, and the plan shows each one with its cost."""

from __future__ import annotations

import json

import pytest

from components.model import catalog
from components.model.settings import SettingsError, parse_settings

SECRET = "aws:secretsmanager/secret:Secret"
INSTANCE = "aws:ec2/instance:Instance"
SETTING = "pulumi-python:dynamic/cloudstack:GlobalSetting"
SERVERS = "pulumi-python:dynamic/cloudstack:ManagementServers"


@pytest.fixture(scope="module")
def scaled(deploy):
    return {n: deploy(managementServerCount=n) for n in (1, 3, 2)}


def resources(d):
    """(type, name) -> inputs of every resource but the stack."""
    return {(r.type, r.name): json.dumps(r.inputs, sort_keys=True, default=str) for r in d.registrations
            if r.custom}


def server_of(name: str) -> int | None:
    """The index of the management server a resource belongs to (by its name), or None."""
    for i in range(1, 5):
        # its own resources, its system and instance status check alarms and its load balancer target
        if name in (f"management-{i}", f"recovery-management-{i}", f"ui-target-{i}") \
                or name.startswith((f"management-{i}-", f"alarms-management-{i}-")):
            return i
    return 0 if name == "management" or name.startswith("management-") else None


def test_the_first_server_keeps_the_single_servers_resources(scaled):
    one, three = scaled[1], scaled[3]
    first = {k for k in resources(one) if server_of(k[1]) == 0}
    assert ("aws:ec2/instance:Instance", "management") in first
    # every resource of the first server is there with the same name (so the same URN) ...
    assert first <= set(resources(three))
    urns = {r.urn for r in one.registrations if (r.type, r.name) in first}
    assert urns <= {r.urn for r in three.registrations}
    # ... and the same inputs, its instance's user data excepted (which the instance ignores
    # once created: ignore_changes on user_data, components/resources/node.py)
    changed = {k for k in first if resources(one)[k] != resources(three)[k]}
    assert changed <= {(INSTANCE, "management")}
    assert any(f.startswith("userData") for f in three.instance("management").ignore_changes)
    # Several servers put the UI/API behind the load balancer: the first server gains its
    # security group, an in-place update (EC2 ModifyInstanceAttribute, no replacement).
    a, b = one.instance("management").inputs, three.instance("management").inputs
    same = ("userDataBase64", "vpcSecurityGroupIds")
    assert {k: v for k, v in a.items() if k not in same} == {k: v for k, v in b.items() if k not in same}
    assert b["vpcSecurityGroupIds"][:len(a["vpcSecurityGroupIds"])] == a["vpcSecurityGroupIds"]
    assert [g for g in b["vpcSecurityGroupIds"] if g not in a["vpcSecurityGroupIds"]] == [
        g for g in b["vpcSecurityGroupIds"] if g.startswith("ui-management-sg")]


@pytest.mark.parametrize("before,after", [(1, 3), (3, 2)])
def test_scaling_adds_or_removes_only_the_extra_servers(scaled, before, after):
    old, new = resources(scaled[before]), resources(scaled[after])
    added_or_removed = old.keys() ^ new.keys()
    # From one server to several, the UI/API goes behind the load balancer (README "HTTPS").
    front_end = {k for k in added_or_removed if k[1].startswith("ui-") and server_of(k[1]) is None}
    assert bool(front_end) == (before == 1) and front_end <= new.keys()
    assert {server_of(name) for _, name in added_or_removed - front_end} == set(
        range(min(before, after), max(before, after)))
    # what else changes: the registration's server list and `host`, and the database's
    # max_connections (350 per server, components/resources/database.py): updates in place
    # From one server to several the API's URL becomes the load balancer's: every registration
    # resource stores the new endpoint, an update that asks CloudStack nothing
    # (components/registration/base.py, diff and update of a connection key).
    changed = {k: sorted(x for x in set(json.loads(old[k])) | set(json.loads(new[k]))
                         if json.loads(old[k]).get(x) != json.loads(new[k]).get(x))
               for k in old.keys() & new.keys() if old[k] != new[k] and server_of(k[1]) is None}
    beyond_endpoint = {k for k, fields in changed.items() if set(fields) - {"endpoint"}}
    assert all(set(fields) == {"endpoint"} for k, fields in changed.items() if k not in beyond_endpoint)
    assert any(changed.values()) and (before == 1) == any("endpoint" in f for f in changed.values())
    # (the dashboard shows every server's memory and disk); behind the load balancer the router
    # forwards no UI/API (its forward parameter, which it polls, and its group's 8080 rule
    # descriptions, in place: README "HTTPS")
    behind = {("aws:ssm/parameter:Parameter", "router-ui-forward"),
              ("aws:ec2/securityGroup:SecurityGroup", "underlay-router-sg")} if before == 1 else set()
    assert beyond_endpoint == {(SETTING, "registration-setting-host"), (SERVERS, "registration-management-servers"),
                               ("aws:rds/parameterGroup:ParameterGroup", "database-params"),
                               ("aws:cloudwatch/dashboard:Dashboard", "alarms-dashboard"),
                               ("aws:ec2/securityGroup:SecurityGroup", "underlay-db-sg"), *behind}, beyond_endpoint


def test_every_server_is_in_host_and_the_registration_drains_the_others(scaled):
    d = scaled[3]
    plan = d.settings.ip_plan()
    wanted = [str(a) for a in plan.management_servers]
    assert len(wanted) == 3
    assert d.get(SETTING, "registration-setting-host").inputs["value"] == ",".join(wanted)
    assert d.get(SETTING, "registration-setting-indirect-agent-lb-algorithm").inputs["value"] == "roundrobin"
    assert d.get(SERVERS, "registration-management-servers").inputs["servers"] == wanted
    # the registration runs after every server's instance exists (and before a removed one goes)
    deps = d.depends_on_names(d.get(SERVERS, "registration-management-servers"))
    assert {(INSTANCE, n) for n in ("management", "management-1", "management-2")} <= deps
    assert [s["overlayIp"] for s in d.outputs["managementServers"]] == wanted
    assert d.outputs["managementServer"]["overlayIp"] == wanted[0]


def test_the_database_admits_every_server_and_nothing_else(scaled):
    for n, d in scaled.items():
        (rule,) = d.get("aws:ec2/securityGroup:SecurityGroup", "underlay-db-sg").inputs["ingress"]
        assert rule["cidrBlocks"] == [f"{a}/32" for a in d.settings.ip_plan().management_servers]
        assert len(rule["cidrBlocks"]) == n and rule["fromPort"] == rule["toPort"] == 3306


def test_additional_servers_share_the_first_ones_secrets_and_publish_nothing(scaled):
    d = scaled[3]
    assert len(d.of_type(SECRET)) == 4   # the first server's, no more
    first, env0 = d.instance("management"), d.boot_env(d.instance("management"))
    for i in (1, 2):
        env = d.boot_env(d.instance(f"management-{i}"))
        assert env["CSEC2_MANAGEMENT_INDEX"] == str(i)
        assert env["CSEC2_MANAGEMENT_SERVERS"] == env0["CSEC2_MANAGEMENT_SERVERS"]
        assert env["CSEC2_OVERLAY_IP"] == env0["CSEC2_MANAGEMENT_SERVERS"].split(",")[i]
        for key in ("CSEC2_SECRET_DB_CLOUD", "CSEC2_SECRET_CLOUDSTACK_KEYS", "CSEC2_SECRET_ADMIN",
                    "CSEC2_SECRET_API_KEYS", "CSEC2_ANCHOR_KEY_ARN"):
            assert env[key] == env0[key], key
        policy = d.policy_document(f"management-{i}")
        actions = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str)
                                                            else s["Action"])}
        assert "secretsmanager:GetSecretValue" in actions
        assert not actions & {"secretsmanager:PutSecretValue", "kms:Encrypt"}, actions
        readable = {r for s in policy["Statement"] if "secretsmanager:GetSecretValue" in s["Action"]
                    for r in s["Resource"]}
        # they join a bootstrapped cloud: never the admin login or the master user; the API keys
        # for the console forwards publisher (userdata/console-forwards.sh), as the first server
        assert readable == {env0["CSEC2_SECRET_DB_CLOUD"], env0["CSEC2_SECRET_CLOUDSTACK_KEYS"],
                            env0["CSEC2_SECRET_API_KEYS"]}
        # they write one parameter only: the console forwards, as the first server does
        written = {r for s in policy["Statement"] if "ssm:PutParameter" in s["Action"] for r in s["Resource"]}
        console = {r for s in d.policy_document("management")["Statement"] if "ssm:PutParameter" in s["Action"]
                   for r in s["Resource"] if r.endswith("/console-forwards")}
        assert len(console) == 1 and written == console, written
        assert {r for s in policy["Statement"] if "ssm:GetParameter" in s["Action"] for r in s["Resource"]} >= console
        assert env["CSEC2_SYSTEM_PUBLIC_RANGE"] == env0["CSEC2_SYSTEM_PUBLIC_RANGE"] != ""
        # they install the first server's package version, read as the hosts read it: its
        # history (the key it is under), and Decrypt only with the anchor key, granted before launch
        history = {r for s in policy["Statement"] if "ssm:GetParameterHistory" in s["Action"] for r in s["Resource"]}
        assert len(history) == 1 and history.pop().endswith("/cloudstack-version")
        (grant,) = [g for g in d.of_type("aws:kms/grant:Grant") if g.name == f"management-{i}-anchor-read"]
        assert grant.inputs["keyId"] == env0["CSEC2_ANCHOR_KEY_ARN"] and grant.inputs["operations"] == ["Decrypt"]
        assert grant.inputs["granteePrincipal"] == d.get("aws:iam/role:Role", f"management-{i}-role").state["arn"]
        assert ("aws:kms/grant:Grant", f"management-{i}-anchor-read") in d.depends_on_names(
            d.instance(f"management-{i}"))
    assert env0["CSEC2_MANAGEMENT_INDEX"] == "0"
    assert first.inputs["instanceType"] == d.instance("management-2").inputs["instanceType"]
    # one anchor key (the hosts trust what the first server publishes), one master-secret parameter
    assert [k.name for k in d.of_type("aws:kms/key:Key") if k.name != "logs-key"] == ["management-anchor-key"]
    assert [r.name for r in d.of_type("aws:ssm/parameter:Parameter") if r.name.endswith("db-master-secret")] == [
        "management-db-master-secret"]


def test_plan_cost_has_a_line_per_server(scaled):
    one, three = (catalog.estimate(scaled[n].settings) for n in (1, 3))
    lines = [line for line in three.lines if line.item.startswith("management server")]
    assert [line.item for line in lines] == [f"management server {i} m6i.xlarge" for i in range(3)]
    assert all(line.quantity == 1 and line.unit_hourly == catalog.ec2_hourly("m6i.xlarge") for line in lines)
    # two more servers with their root volumes and their system and instance status check
    # alarms, and the load balancer that several servers need (README "HTTPS")
    extra = {"Application Load Balancer (UI/API, plain HTTP)", "public IPv4 addresses (load balancer, one per AZ)"}
    front_end = sum(line.hourly for line in three.lines if line.item in extra)
    assert front_end > 0 and not any(line.item in extra for line in one.lines)
    alarms = [sum(line.hourly for line in e.lines if line.item == "CloudWatch alarm metrics") for e in (one, three)]
    assert alarms[1] - alarms[0] == pytest.approx(4 * catalog.CLOUDWATCH_ALARM_MONTH / catalog.HOURS_PER_MONTH)
    # and each server's log (0.5 GB a day) and agent metrics (3)
    watched = 2 * (0.5 / 24 * catalog.CLOUDWATCH_LOG_GB + 3 * catalog.CLOUDWATCH_METRIC_MONTH / catalog.HOURS_PER_MONTH)
    assert three.hourly - one.hourly == pytest.approx(
        2 * catalog.ec2_hourly("m6i.xlarge")
        + 2 * scaled[3].settings.root_volume_gb * catalog.EBS_GP3_GB_MONTH / catalog.HOURS_PER_MONTH
        + front_end + alarms[1] - alarms[0] + watched)


@pytest.mark.parametrize("value,message", [(0, "between 1 and 5"), (6, "between 1 and 5"), ("two", "")])
def test_management_server_count_is_validated(value, message):
    with pytest.raises(SettingsError) as e:
        parse_settings({"adminCidrs": ["203.0.113.0/24"], "managementServerCount": value})
    assert [p.key for p in e.value.problems] == ["managementServerCount"]
    assert message in str(e.value)


def test_management_servers_count_as_members_of_the_multicast_group():
    # router + 5 servers + 94 hosts = 100 members: the most a Transit Gateway group holds
    parse_settings({"adminCidrs": ["203.0.113.0/24"], "managementServerCount": 5, "hostCount": 94,
                    "cloudstackSubnetCidr": "10.0.0.0/24"})
    with pytest.raises(SettingsError, match=r"1 router\(s\) \+ 5 management server\(s\) \+ 95 hosts = 101 members"):
        parse_settings({"adminCidrs": ["203.0.113.0/24"], "managementServerCount": 5, "hostCount": 95,
                        "cloudstackSubnetCidr": "10.0.0.0/24"})
