"""routerCount 2: two overlay routers under Pulumi mocks (the real program, offline runner):
their instances and interfaces, VRRP in the routers' security group, the takeover's IAM
grants, who owns the route and the Elastic IPs, the recovery alarms, and a count change that
keeps router 0."""

from __future__ import annotations

import json
import types

import pytest

from components import boot
from components.cli import offline
from components.model.settings import NAMESPACE, SettingsError, parse_settings

INSTANCE = "aws:ec2/instance:Instance"
ENI = "aws:ec2/networkInterface:NetworkInterface"
EIP = "aws:ec2/eip:Eip"
ROUTE = "aws:ec2/route:Route"
SG = "aws:ec2/securityGroup:SecurityGroup"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
ACCOUNT = offline.ACCOUNT_ID


@pytest.fixture(scope="module")
def one(deploy):
    return deploy(routerCount=1)


@pytest.fixture(scope="module")
def pair(deploy):
    return deploy(routerCount=2)


def router_urns(d) -> dict[str, str]:
    """URN by (type, name) of everything the OverlayRouter component holds, and the component."""
    [component] = [r for r in d.registrations if r.type == "cloudstack-ec2:index:OverlayRouter"]
    return {f"{r.type} {r.name}": r.urn for r in d.registrations
            if r.urn == component.urn or r.urn in d.descendants(component.urn)}


# --- two instances, two interfaces ------------------------------------------------------------

def test_each_router_has_its_own_instance_and_interface_with_the_check_off(pair):
    routers = [pair.instance("router"), pair.instance("router-1")]
    enis = [pair.get(ENI, "router-eni"), pair.get(ENI, "router-1-eni")]
    for instance, eni in zip(routers, enis):
        assert instance.inputs["primaryNetworkInterface"]["networkInterfaceId"] == eni.id
        assert eni.inputs["sourceDestCheck"] is False
        assert eni.inputs["privateIpsCount"] == 2  # its own console and tenants' addresses
        assert sorted(eni.inputs["securityGroups"]) == sorted(
            [pair.get(SG, "underlay-member-sg").id, pair.get(SG, "underlay-router-sg").id])
    assert enis[0].state["private_ip"] != enis[1].state["private_ip"]
    assert len([i for i in pair.instances() if i.inputs["tags"].get("Role") == "overlay-router"]) == 2


def test_one_router_is_exactly_as_before(one):
    assert [i.name for i in one.instances() if i.inputs["tags"].get("Role") == "overlay-router"] == ["router"]
    assert [e.name for e in one.of_type(ENI)] == ["router-eni"]
    assert "pair" not in one.outputs["router"]


def test_both_interfaces_exist_before_either_router_and_each_router_knows_the_other(monkeypatch):
    """Each router's boot script names its peer's primary address: both interfaces come first."""
    told: list[boot.RouterPairBoot] = []
    real = boot.render_router_user_data

    def record(config, **kwargs):
        told.append(config.pair)
        return real(config, **kwargs)

    monkeypatch.setattr(boot, "render_router_user_data", record)
    from tests.unit.conftest import run_program

    d = run_program({"routerCount": 2})
    enis = [d.get(ENI, "router-eni"), d.get(ENI, "router-1-eni")]
    eips = {role: d.get(EIP, name).id for role, name in
            (("infrastructure", "router-eip"), ("console", "router-console-eip"), ("tenant", "router-tenant-eip"))}
    tables = {r.inputs["routeTableId"] for r in d.of_type(ROUTE) if r.name.startswith("router-overlay-route-")}
    by_index = {p.index: p for p in told}
    assert sorted(by_index) == [0, 1]
    for index, peer in ((0, enis[1]), (1, enis[0])):
        assert by_index[index].peer_private_ip == peer.state["private_ip"]
        assert set(by_index[index].route_table_ids) == tables and len(tables) == 3
        assert dict(by_index[index].eip_allocations) == eips
        assert all(a.startswith("eipalloc-") for a in eips.values())
    # Each router boots with its own console and tenants' addresses.
    env0, env1 = d.boot_env(d.instance("router")), d.boot_env(d.instance("router-1"))
    assert env1["CONSOLE_ADDRESS"] in enis[1].state["private_ips"]
    assert env1["TENANT_ADDRESS"] in enis[1].state["private_ips"]
    assert env0["CONSOLE_ADDRESS"] in enis[0].state["private_ips"]


def test_one_router_is_told_of_no_pair(monkeypatch):
    told = []
    real = boot.render_router_user_data
    monkeypatch.setattr(boot, "render_router_user_data", lambda config, **kw: told.append(config.pair)
                        or real(config, **kw))
    from tests.unit.conftest import run_program

    run_program({"routerCount": 1})
    assert told == [None]


# --- VRRP in the routers' group ---------------------------------------------------------------

def vrrp_rules(d) -> list[dict]:
    return [r for sg in d.of_type(SG) for r in d.ingress(sg) if str(r.get("protocol")) == "112"]


def test_vrrp_is_admitted_from_the_other_router_only(pair):
    router_sg = pair.get(SG, "underlay-router-sg")
    [rule] = vrrp_rules(pair)
    assert rule in pair.ingress(router_sg)
    # The group itself as the source: only the two routers carry it.
    assert rule.get("self") is True and not rule.get("cidrBlocks") and not rule.get("securityGroups")
    carriers = [e.name for e in pair.of_type(ENI) if router_sg.id in e.inputs["securityGroups"]]
    assert sorted(carriers) == ["router-1-eni", "router-eni"]
    assert not any(router_sg.id in (i.inputs.get("vpcSecurityGroupIds") or []) for i in pair.instances())


def test_no_vrrp_with_one_router_and_the_rest_of_the_group_unchanged(one, pair):
    assert vrrp_rules(one) == []
    before = one.ingress(one.get(SG, "underlay-router-sg"))
    after = [r for r in pair.ingress(pair.get(SG, "underlay-router-sg")) if str(r.get("protocol")) != "112"]
    assert after == before


# --- the takeover's IAM grants ----------------------------------------------------------------

def statements_for(d, action: str) -> list[dict]:
    return [s for s in d.policy_document("router")["Statement"] if action in s["Action"]]


def arn(kind: str, resource_id: str, region: str = "us-east-1", partition: str = "aws") -> str:
    return f"arn:{partition}:ec2:{region}:{ACCOUNT}:{kind}/{resource_id}"


def test_replace_route_only_in_the_managed_route_tables(pair):
    [statement] = statements_for(pair, "ec2:ReplaceRoute")
    assert statement["Action"] == ["ec2:ReplaceRoute"]
    tables = sorted({r.inputs["routeTableId"] for r in pair.of_type(ROUTE) if r.name.startswith("router-overlay")})
    enis = [pair.get(ENI, n).id for n in ("router-eni", "router-1-eni")]
    assert sorted(statement["Resource"]) == sorted([arn("route-table", t) for t in tables]
                                                    + [arn("network-interface", e) for e in enis])
    assert statement["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}


def test_associate_address_only_for_the_stacks_allocations_and_the_two_interfaces(pair):
    [statement] = statements_for(pair, "ec2:AssociateAddress")
    assert statement["Action"] == ["ec2:AssociateAddress"]
    eips = [pair.get(EIP, n).id for n in ("router-eip", "router-console-eip", "router-tenant-eip")]
    enis = [pair.get(ENI, n).id for n in ("router-eni", "router-1-eni")]
    assert sorted(statement["Resource"]) == sorted([arn("elastic-ip", a) for a in eips]
                                                    + [arn("network-interface", e) for e in enis])
    assert "*" not in statement["Resource"]
    assert statement["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}


def test_the_describes_are_read_only_and_confined_to_the_region(pair):
    [statement] = statements_for(pair, "ec2:DescribeRouteTables")
    assert sorted(statement["Action"]) == ["ec2:DescribeAddresses", "ec2:DescribeInstanceStatus",
                                           "ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces",
                                           "ec2:DescribeRouteTables"]
    assert statement["Resource"] == ["*"]
    assert statement["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}


def test_the_routers_may_read_the_user_data_of_this_stacks_routers_only(pair):
    [statement] = statements_for(pair, "ec2:DescribeInstanceAttribute")
    assert statement["Action"] == ["ec2:DescribeInstanceAttribute"]
    assert statement["Resource"] == [arn("instance", "*")]
    assert statement["Condition"] == {"StringEquals": {
        "aws:RequestedRegion": "us-east-1", "aws:ResourceTag/Project": "cloudstack-ec2",
        "aws:ResourceTag/Role": "overlay-router", "aws:ResourceTag/Stack": "dev"}}
    assert pair.instance("router-1").inputs["tags"]["Role"] == "overlay-router"


def test_both_routers_share_one_role(pair):
    profiles = {pair.instance(n).inputs["iamInstanceProfile"] for n in ("router", "router-1")}
    assert len(profiles) == 1


def test_one_router_may_change_nothing_on_ec2(one):
    actions = [a for s in one.policy_document("router")["Statement"] for a in s["Action"]]
    assert not [a for a in actions if a.startswith("ec2:")]


def test_the_grants_follow_the_partition(deploy):
    d = deploy(**{"aws:region": "us-gov-west-1", "routerCount": 2})
    [statement] = statements_for(d, "ec2:AssociateAddress")
    assert all(r.startswith("arn:aws-us-gov:ec2:us-gov-west-1:") for r in statement["Resource"])


# --- who owns the route and the Elastic IPs ---------------------------------------------------

def test_with_a_pair_pulumi_leaves_the_route_target_and_the_associations_to_the_active_router(pair):
    routes = [r for r in pair.of_type(ROUTE) if r.name.startswith("router-overlay-route-")]
    assert routes and all(r.ignore_changes == ("networkInterfaceId",) for r in routes)
    for name in ("router-eip", "router-console-eip", "router-tenant-eip"):
        assert set(pair.get(EIP, name).ignore_changes) == {"networkInterface", "associateWithPrivateIp", "instance"}
    # Router 0 is where they start.
    eni0 = pair.get(ENI, "router-eni").id
    assert all(r.inputs["networkInterfaceId"] == eni0 for r in routes)
    assert all(pair.get(EIP, n).inputs["networkInterface"] == eni0
               for n in ("router-eip", "router-console-eip", "router-tenant-eip"))


def test_with_one_router_pulumi_puts_route_and_associations_back_on_it(one):
    routes = [r for r in one.of_type(ROUTE) if r.name.startswith("router-overlay-route-")]
    assert routes and all(r.ignore_changes == () for r in routes)
    assert all(one.get(EIP, n).ignore_changes == () for n in ("router-eip", "router-console-eip", "router-tenant-eip"))


# --- routerCount 1 -> 2 -> 1 keeps router 0 ---------------------------------------------------

def later_run(previous, router_count: int):
    """The program run again on a deployed stack (`pulumi up` after a config change)."""
    from components.program import build

    config = dict(previous.config)
    config[f"{NAMESPACE}:routerCount"] = router_count
    return offline.run_offline(build, config, project="cloudstack-ec2", stack="dev", region="us-east-1",
                               subnet_cidrs={"cloudstack": str(config[f"{NAMESPACE}:cloudstackSubnetCidr"])},
                               previous_outputs=previous.outputs)


def test_adding_a_second_router_keeps_router_0s_urns_inputs_and_addresses(one):
    grown = later_run(one, 2)
    before, after = router_urns(one), {f"{r.type} {r.name}": r.urn for r in grown.registrations}
    assert all(after.get(key) == urn for key, urn in before.items()), \
        sorted(k for k, u in before.items() if after.get(k) != u)
    for typ, name in ((INSTANCE, "router"), (ENI, "router-eni"), (EIP, "router-eip"),
                      (EIP, "router-console-eip"), (EIP, "router-tenant-eip")):
        old = one.get(typ, name)
        [new] = [r for r in grown.registrations if r.type == typ and r.name == name]
        # Nothing that would replace it changes (user data is pinned after creation).
        unchanged = {k: v for k, v in old.inputs.items() if k not in ("userDataBase64",)}
        assert {k: new.inputs.get(k) for k in unchanged} == unchanged, name
    assert grown.outputs["router"]["consolePrivateIp"] == one.outputs["router"]["consolePrivateIp"]
    assert grown.outputs["router"]["publicIp"] == one.outputs["router"]["publicIp"]
    assert {r.name for r in grown.registrations if r.type == INSTANCE} >= {"router", "router-1"}


def test_going_back_to_one_router_deletes_router_1_only(pair):
    shrunk = later_run(pair, 1)
    after = {f"{r.type} {r.name}": r.urn for r in shrunk.registrations}
    before = router_urns(pair)
    gone = sorted(k for k in before if k not in after)
    assert gone == sorted([f"{ENI} router-1-eni", f"{INSTANCE} router-1"])
    assert all(after[k] == u for k, u in before.items() if k in after)
    # Pulumi owns the route and the associations again.
    assert all(r.ignore_changes == () for r in shrunk.registrations
               if r.type in (ROUTE, EIP) and r.name.startswith("router-"))


# --- EC2 automatic recovery -------------------------------------------------------------------

def alarms(d) -> dict[str, object]:
    """The system status check alarms (RecoveryAlarms), not the deployment's others (DeploymentAlarms)."""
    return {r.name: r for r in d.of_type(ALARM) if r.name.startswith("recovery-")}


def test_each_router_and_the_management_server_has_a_recover_alarm(pair):
    found = alarms(pair)
    [topic] = pair.of_type("aws:sns/topic:Topic")
    assert sorted(found) == ["recovery-management", "recovery-router", "recovery-router-1"]
    for alarm_name, instance in (("recovery-router", "router"), ("recovery-router-1", "router-1"),
                                 ("recovery-management", "management")):
        alarm = found[alarm_name]
        assert alarm.inputs["metricName"] == "StatusCheckFailed_System"
        assert alarm.inputs["namespace"] == "AWS/EC2"
        assert alarm.inputs["dimensions"] == {"InstanceId": pair.instance(instance).id}
        assert alarm.inputs["alarmActions"] == ["arn:aws:automate:us-east-1:ec2:recover", topic.state["arn"]]
        assert alarm.inputs["okActions"] == [topic.state["arn"]]
        assert alarm.inputs["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm.inputs["threshold"] == 1 and alarm.inputs["evaluationPeriods"] == 2


def test_one_router_has_its_recover_alarm_too(one):
    assert sorted(alarms(one)) == ["recovery-management", "recovery-router"]


@pytest.mark.parametrize("region, partition", [("us-gov-west-1", "aws-us-gov"), ("cn-north-1", "aws-cn")])
def test_the_recover_action_names_the_partition_and_region(deploy, region, partition):
    d = deploy(**{"aws:region": region})
    assert {a.inputs["alarmActions"][0] for a in alarms(d).values()} == {
        f"arn:{partition}:automate:{region}:ec2:recover"}


def test_a_type_the_recover_action_does_not_support_gets_an_alarm_that_only_notifies_and_a_warning(deploy):
    d = deploy(managementInstanceType="m8i.xlarge")
    [topic] = d.of_type("aws:sns/topic:Topic")
    assert alarms(d)["recovery-management"].inputs["alarmActions"] == [topic.state["arn"]]
    assert any(w.startswith("management m8i.xlarge:") and "has no recover action and only notifies" in w
               for w in d.run.warnings)


def test_recovery_notifies_the_topic_it_is_given():
    """The component outside the program: its alarm recovers and notifies the topic."""
    import pulumi

    from components.resources.recovery import RecoveryAlarms, RecoveryAlarmsArgs, RecoveryTarget

    topic = "arn:aws:sns:us-east-1:123456789012:ops"

    class Result:
        outputs: dict = {}

    def program():
        RecoveryAlarms("recovery", RecoveryAlarmsArgs(
            targets=[RecoveryTarget("router", "i-0123456789abcdef0", "c5n.large")], region="us-east-1",
            notification_topic_arn=topic))
        pulumi.export("done", True)
        return Result()

    run = offline.run_offline(program, {}, project="cloudstack-ec2", stack="dev", region="us-east-1")
    [alarm] = run.of_type(ALARM)
    assert alarm.inputs["alarmActions"] == ["arn:aws:automate:us-east-1:ec2:recover", topic]
    assert alarm.inputs["okActions"] == [topic]


# --- settings ---------------------------------------------------------------------------------

def dev_raw(**overrides) -> dict:
    from tests.unit.conftest import dev_config

    raw = {k.split(":", 1)[1]: v for k, v in dev_config().items() if k.startswith(f"{NAMESPACE}:")}
    raw.update(overrides)
    return raw


@pytest.mark.parametrize("value", [0, 3, -1])
def test_router_count_outside_1_or_2_is_refused_naming_key_value_and_what_is_accepted(value):
    with pytest.raises(SettingsError) as error:
        parse_settings(dev_raw(routerCount=value))
    text = str(error.value)
    assert f"cloudstack-ec2:routerCount = {value!r}: must be 1 (one router) or 2 (an active/standby pair)" in text


def test_router_count_must_be_an_integer():
    with pytest.raises(SettingsError, match=r"cloudstack-ec2:routerCount = 'two': expected an integer"):
        parse_settings(dev_raw(routerCount="two"))


def test_router_count_defaults_to_one():
    assert parse_settings(dev_raw()).router_count == 1
    assert parse_settings(dev_raw(routerCount="2")).router_count == 2


def test_a_second_router_is_one_more_multicast_member():
    parse_settings(dev_raw(hostCount=97, routerCount=2))
    with pytest.raises(SettingsError, match=r"2 router\(s\) \+ 1 management server\(s\) \+ 98 hosts = 101 members"):
        parse_settings(dev_raw(hostCount=98, routerCount=2))


def test_a_second_router_takes_three_addresses_of_the_dedicated_subnet():
    # A /28 has 11 usable addresses: 1 router + 2 of its addresses + management + EFS + TGW = 6, 5 hosts.
    parse_settings(dev_raw(cloudstackSubnetCidr="10.0.0.0/28", hostCount=5))
    parse_settings(dev_raw(cloudstackSubnetCidr="10.0.0.0/28", hostCount=2, routerCount=2))
    with pytest.raises(SettingsError, match=r"it holds at most 2 hosts"):
        parse_settings(dev_raw(cloudstackSubnetCidr="10.0.0.0/28", hostCount=3, routerCount=2))


# --- the production example stack and the plan ------------------------------------------------

def test_the_production_example_plans_offline_with_two_routers(capsys):
    from planrun import cli

    result = cli(capsys, "plan", "--stack", "prod", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    a = report["availability"]
    assert a["routerCount"] == 2 and a["gateway"] == "10.100.0.1"
    assert [r["role"] for r in a["routers"]] == ["preferred active", "standby"]
    assert len({r["privateIp"] for r in a["routers"]}) == 2
    assert a["failover"]["routeTables"] == 3 and a["failover"]["detectionSeconds"] == 3
    assert [r["instance"] for r in a["recovery"] if r["alarm"]] == ["router", "router-1", "management",
                                                                     "management-1"]
    [router_line] = [l for l in report["cost"]["lines"] if l["item"].startswith("router ")]
    assert router_line["quantity"] == 2 and router_line["item"] == "router c5n.large (active/standby pair)"
    assert report["ipPlan"]["multicastMembers"] == 2 + 2 + 3   # routers, management servers, hosts

    text = cli(capsys, "plan", "--stack", "prod")
    assert text.returncode == 0, text.stderr
    assert "virtual gateway (VRRP)          10.100.0.1" in text.stdout
    assert "Router pair (routerCount 2): virtual gateway 10.100.0.1, held by the active router" in text.stdout
    assert "IP protocol 112 from this group" in text.stdout
    assert "recovery alarm on router-1 (c5n.large): StatusCheckFailed_System -> ec2:recover" in text.stdout


def test_the_plan_lists_the_recover_alarm_of_every_management_server(capsys):
    from planrun import cli

    result = cli(capsys, "plan", "--stack", "dev", "--set", "managementServerCount=3", "--json")
    assert result.returncode == 0, result.stderr
    recovered = [r["instance"] for r in json.loads(result.stdout)["availability"]["recovery"] if r["alarm"]]
    assert recovered == ["router", "management", "management-1", "management-2"]
    text = cli(capsys, "plan", "--stack", "dev", "--set", "managementServerCount=3").stdout
    assert "recovery alarm on management-2 (m6i.xlarge): StatusCheckFailed_System -> ec2:recover" in text


def test_the_one_router_stacks_stay_one_router_and_say_they_have_no_failover(capsys):
    from planrun import cli

    for stack in ("dev", "training"):
        result = cli(capsys, "plan", "--stack", stack, "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["availability"]["routerCount"] == 1 and report["availability"]["failover"] is None
        [router_line] = [l for l in report["cost"]["lines"] if l["item"].startswith("router ")]
        assert router_line["quantity"] == 1
    text = cli(capsys, "plan", "--stack", "dev").stdout
    assert "Router: one (routerCount 1), gateway 10.100.0.1, no failover" in text
    assert "router (overlay gateway)        10.100.0.1" in text


def test_the_second_router_costs_one_more_instance_and_root_volume_not_more_elastic_ips():
    from components.model import catalog

    one, two = (catalog.estimate(parse_settings(dev_raw(routerCount=n))) for n in (1, 2))
    lines = {n: {l.item.split(" (")[0]: l for l in e.lines} for n, e in ((1, one), (2, two))}
    router = catalog.ec2_hourly("c5n.large")
    # CloudWatch: router 1's system and instance status check alarms and the pair's takeover
    # alarm; router 1's log (10 MB a day) and agent metrics (3) and the takeover count.
    watched = (3 * catalog.CLOUDWATCH_ALARM_MONTH + 4 * catalog.CLOUDWATCH_METRIC_MONTH) / catalog.HOURS_PER_MONTH \
        + 0.01 / 24 * catalog.CLOUDWATCH_LOG_GB
    assert two.hourly - one.hourly == pytest.approx(
        router + 50 * catalog.EBS_GP3_GB_MONTH / catalog.HOURS_PER_MONTH + watched)
    assert lines[1]["Elastic IPs"].quantity == lines[2]["Elastic IPs"].quantity == 3
    # router 1's system and instance status check alarms and the pair's takeover alarm
    assert lines[2]["CloudWatch alarm metrics"].quantity - lines[1]["CloudWatch alarm metrics"].quantity == 3


def test_going_back_to_one_router_warns_to_refresh_first(pair, one):
    shrunk = later_run(pair, 1)
    [warning] = [w for w in shrunk.warnings if "routerCount 2 -> 1" in w]
    assert "`pulumi up --refresh`" in warning and "puts them back on router 0" in warning
    assert not [w for w in later_run(pair, 2).warnings if "routerCount" in w]
    assert not [w for w in later_run(one, 1).warnings if "routerCount" in w]


def test_adding_a_second_router_says_router_1_holds_back_and_the_next_update_replaces_router_0(one):
    [warning] = [w for w in later_run(one, 2).warnings if "routerCount 1 -> 2" in w]
    assert "does not replace" in warning and "holds back" in warning and "never has two gateways" in warning
    assert "run `pulumi up` again" in warning and "one failover" in warning


def router0(run):
    [instance] = [r for r in run.registrations if r.type == INSTANCE and r.name == "router"]
    return instance


def chained_run(previous, router_count: int = 2) -> types.SimpleNamespace:
    """later_run, as the previous run of a further later_run (its config and outputs)."""
    run = later_run(previous, router_count)
    config = {**previous.config, f"{NAMESPACE}:routerCount": router_count}
    return types.SimpleNamespace(config=config, outputs=run.outputs, registrations=run.registrations,
                                 warnings=run.warnings)


def boot_env_of(user_data: str) -> dict[str, str]:
    from tests.unit.conftest import Deployed

    return Deployed.boot_env(types.SimpleNamespace(inputs={"userDataBase64": user_data}))


def test_the_update_adding_router_1_keeps_router_0_and_its_boot(one):
    grown = later_run(one, 2)
    assert "userDataBase64" in router0(grown).ignore_changes and router0(grown).replace_on_changes == ()
    assert grown.outputs["router"]["bootsInPair"] is False


def test_the_next_update_replaces_router_0_with_the_pairs_boot_then_pins_it_again(one):
    grown = chained_run(one)
    renewed = chained_run(grown)
    router = router0(renewed)
    # The engine replaces it (delete first: one interface) and launches it with this run's
    # user data, which names its place in the pair.
    assert "userDataBase64" not in router.ignore_changes and router.replace_on_changes == ("userDataBase64",)
    assert router.delete_before_replace
    env = boot_env_of(router.inputs["userDataBase64"])
    assert env["CSEC2_ROUTER_PAIR_INDEX"] == "0"
    [warning] = [w for w in renewed.warnings if "replaces router 0" in w]
    assert "one failover" in warning and "Router 1 takes the gateway" in warning
    # Router 1 is left alone, and so is every later update.
    [router1] = [r for r in renewed.registrations if r.type == INSTANCE and r.name == "router-1"]
    assert "userDataBase64" in router1.ignore_changes and router1.replace_on_changes == ()
    assert renewed.outputs["router"]["bootsInPair"] is True
    after = chained_run(renewed)
    assert "userDataBase64" in router0(after).ignore_changes and router0(after).replace_on_changes == ()
    assert not [w for w in after.warnings if "router 0" in w]


def test_a_stack_created_with_a_pair_never_replaces_router_0(pair):
    assert pair.outputs["router"]["bootsInPair"] is True
    again = later_run(pair, 2)
    assert router0(again).replace_on_changes == () and "userDataBase64" in router0(again).ignore_changes


def test_one_router_records_that_it_runs_one_routers_boot(one):
    assert one.outputs["router"]["bootsInPair"] is False


def test_the_ip_plan_counts_a_second_router_as_a_member_and_three_subnet_addresses():
    import ipaddress

    from components.model import ipplan

    overlay, subnet = ipaddress.IPv4Network("10.100.0.0/16"), ipaddress.IPv4Network("10.0.0.0/24")
    one, two = ipplan.host_limit(overlay, subnet), ipplan.host_limit(overlay, subnet, router_count=2)
    assert (one.multicast - two.multicast, one.subnet - two.subnet) == (1, ipplan.ROUTER_SUBNET_ADDRESSES)
    plan = ipplan.build_plan(overlay_cidr="10.100.0.0/16", vpc_cidr="10.0.0.0/16", host_count=2,
                             guest_cidr="10.1.1.0/24", guest_vlans=(1000, 1999), router_count=2)
    assert plan.multicast_members == 2 + 1 + 2 and plan.router == ipaddress.IPv4Address("10.100.0.1")
    with pytest.raises(ValueError, match="router_count 3 must be 1..2"):
        ipplan.build_plan(overlay_cidr="10.100.0.0/16", vpc_cidr="10.0.0.0/16", host_count=2,
                          guest_cidr="10.1.1.0/24", guest_vlans=(1000, 1999), router_count=3)


def test_both_routers_boot_the_same_script_with_the_same_rules_but_their_own_addresses(pair):
    """README's isolation table holds on both: the routers' boot scripts (firewall, NAT, DNS,
    forwards, budgets) differ only in each router's own name and its own two addresses."""
    scripts = [pair.boot_script(pair.instance(n)).splitlines() for n in ("router", "router-1")]
    assert len(scripts[0]) == len(scripts[1])
    differing = {a.split("=", 1)[0] for a, b in zip(*scripts) if a != b}
    # Each router's own name, its own three addresses (the VPC's secondary ones and its overlay
    # address), its place in the pair and its peer; the gateway both answer for is the same.
    assert differing == {"CSEC2_HOSTNAME", "CSEC2_FQDN", "CONSOLE_ADDRESS", "TENANT_ADDRESS", "OVERLAY_ADDRESS",
                         "CSEC2_OVERLAY_IP", "CSEC2_ROUTER_PAIR_INDEX", "CSEC2_ROUTER_PAIR_PEER"}
    env0, env1 = (pair.boot_env(pair.instance(n)) for n in ("router", "router-1"))
    assert env1["CSEC2_FQDN"] == "router-1.cloudstack.internal"
    assert env0["CSEC2_ROUTER_PAIR_GATEWAY"] == env1["CSEC2_ROUTER_PAIR_GATEWAY"] == "10.100.0.1"
    assert (env0["OVERLAY_ADDRESS"], env1["OVERLAY_ADDRESS"]) == ("10.100.63.254/16", "10.100.63.255/16")
    assert env0["CSEC2_ROUTER_PAIR_PEER"] != env1["CSEC2_ROUTER_PAIR_PEER"]
    assert {env0["CONSOLE_ADDRESS"], env0["TENANT_ADDRESS"]}.isdisjoint({env1["CONSOLE_ADDRESS"], env1["TENANT_ADDRESS"]})


def test_the_recovery_table_takes_metal_sizes_and_refuses_instance_store_families():
    from components.model import recovery

    for supported in ("c5n.large", "c5n.metal", "m6i.xlarge", "m5zn.metal", "C5N.LARGE"):
        assert recovery.supports_recovery(supported), supported
    # An instance store volume makes the recovery fail (EC2 User Guide).
    for unsupported in ("c5d.metal", "i3.metal", "m5d.large"):
        assert not recovery.supports_recovery(unsupported), unsupported
    assert recovery.recover_action_arn("aws-cn", "cn-north-1") == "arn:aws-cn:automate:cn-north-1:ec2:recover"
    assert recovery.targets("c5n.large", 2, "m6i.xlarge") == [
        ("router", "c5n.large"), ("router-1", "c5n.large"), ("management", "m6i.xlarge")]


def test_the_offline_rules_refuse_an_ec2_action_cloudwatch_would_refuse():
    from components.model import aws_constraints

    good = {"namespace": "AWS/EC2", "metricName": "StatusCheckFailed_System",
            "dimensions": {"InstanceId": "i-0123456789abcdef0"},
            "alarmActions": ["arn:aws:automate:us-east-1:ec2:recover"]}

    def problems(**changes):
        return [v.message for v in aws_constraints.check_inputs(ALARM, "a", {**good, **changes})]

    assert problems() == []
    assert any("valid only on an AWS/EC2 metric" in p for p in problems(dimensions={"AutoScalingGroupName": "g"}))
    assert any("valid only on an AWS/EC2 metric" in p for p in problems(namespace="CWAgent"))
    assert any("the alarm is in us-east-1" in p
               for p in problems(alarmActions=["arn:aws:automate:eu-west-1:ec2:recover"]))
    assert any("at most 5" in p for p in problems(okActions=[f"arn:aws:sns:us-east-1:1:t{i}" for i in range(6)]))
    # recover fits the system check, reboot the instance check (CloudWatch refuses recover there)
    assert any("refuses on StatusCheckFailed_Instance" in p for p in problems(metricName="StatusCheckFailed_Instance"))
    assert problems(metricName="StatusCheckFailed_Instance",
                    alarmActions=["arn:aws:automate:us-east-1:ec2:reboot"]) == []
