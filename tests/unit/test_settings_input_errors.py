"""A first hour's typing mistakes end in one clear problem naming the key, the value and what
is accepted (exit 2), never in a traceback or a silent default."""

import pytest

from components.model import catalog
from components.model.settings import KEYS, SettingsError, parse_settings

from planrun import cli

VALID = {"adminCidrs": ["203.0.113.0/24"]}


@pytest.fixture
def plan(capsys):
    return lambda *sets: cli(capsys, "plan", "--stack", "dev", *[a for s in sets for a in ("--set", s)])


def problem_lines(result) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("  - ")]


def only_problem(plan, *sets) -> str:
    result = plan(*sets)
    lines = problem_lines(result)
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    return lines[0]


# --- aws:region and the aws: namespace --------------------------------------------------------

@pytest.mark.parametrize("region,hint", [
    ("eu-west-1a", "that is an availability zone of eu-west-1"),
    ("us-east1", "did you mean us-east-1?"),
    ("US-EAST-1", "did you mean us-east-1?"),
    ("eu_west_1", "did you mean eu-west-1?"),
    ("eu-west-1 ", "did you mean eu-west-1?"),
])
def test_malformed_region_is_a_settings_problem(plan, region, hint):
    line = only_problem(plan, f"aws:region={region}")
    assert f"aws:region = {region!r}: is not an AWS region name" in line and hint in line


def test_region_of_no_partition_or_an_unsupported_one_is_refused(plan):
    assert "is in no AWS partition" in only_problem(plan, "aws:region=xx-nowhere-9")
    line = only_problem(plan, "aws:region=eu-isoe-west-1")
    assert "partition aws-iso-e" in line and "supported partitions: aws, aws-us-gov, aws-cn" in line


def test_region_problems_come_with_the_other_settings_problems(plan):
    result = plan("aws:region=eu-west-1a", "hostCount=0")
    assert result.returncode == 2
    assert [line.split(" = ")[0] for line in problem_lines(result)] == [
        "  - cloudstack-ec2:hostCount", "  - aws:region"]


def test_misspelt_aws_key_is_not_passed_on_silently(plan):
    line = only_problem(plan, "aws:regoin=eu-west-1")
    assert "aws:regoin = 'eu-west-1': unknown key (did you mean aws:region?)" in line
    line = only_problem(plan, "aws:zzzqqq=1")
    assert "aws:zzzqqq = '1': unknown key (not a setting of the AWS provider" in line


def test_misspelt_namespace_names_the_nearest(plan):
    line = only_problem(plan, "awz:region=eu-west-1")
    assert "namespace 'awz' is not read by this program: did you mean aws:region?" in line


def test_aws_keys_the_provider_reads_are_accepted(plan):
    result = plan("aws:region=eu-central-1", "aws:skipRequestingAccountId=true")
    assert result.returncode == 0, result.stderr


# --- did you mean ----------------------------------------------------------------------------

@pytest.mark.parametrize("typo,key", [
    ("hostcount", "hostCount"), ("hostCout", "hostCount"), ("hostCounts", "hostCount"),
    ("host_count", "hostCount"), ("adminCidr", "adminCidrs"), ("hostType", "hostInstanceType"),
])
def test_unknown_key_names_the_nearest_key(typo, key):
    with pytest.raises(SettingsError) as err:
        parse_settings({**VALID, typo: "3"})
    assert [(p.key, p.message) for p in err.value.problems] == [(typo, f"unknown key (did you mean {key}?)")]


@pytest.mark.parametrize("name,head", [("ldap.provider", "ldap"), ("ldap.servers[0].host", "ldap"),
                                       ("adminCidrs[0]", "adminCidrs")])
def test_a_path_set_without_path_is_named_as_a_field_of_its_key(name, head):
    with pytest.raises(SettingsError) as err:
        parse_settings({**VALID, name: "x"})
    [problem] = err.value.problems
    assert problem.key == name
    assert problem.message == (f"unknown key (`{head}` is one key holding an object: set a field with "
                               f"`pulumi config set --path '{name}' <value>`, or `{head}` whole as JSON)")


def test_unknown_key_without_a_near_one_points_to_the_list(capsys):
    with pytest.raises(SettingsError) as err:
        parse_settings({**VALID, "zzzqqq": "3"})
    assert "`cloudstack-ec2 keys` lists the accepted keys" in err.value.problems[0].message
    result = cli(capsys, "keys")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for key in KEYS:
        row = next(line for line in lines if line.split()[:1] == [key.name])
        assert key.doc in row, key.name
    assert any(line.split()[:2] == ["hostCount", "1"] for line in lines)
    assert any(line.split()[:2] == ["adminCidrs", "[]"] for line in lines)


# --- instance types and database classes -----------------------------------------------------

@pytest.mark.parametrize("key,value,hint", [
    ("hostInstanceType", "m5.metall", "did you mean m5.metal?"),
    ("routerInstanceType", "c5n.larg", "did you mean c5n.large?"),
    ("dbInstanceClass", "db.t4g.mediun", "did you mean db.t4g.medium?"),
])
def test_misspelt_size_is_refused_with_the_nearest_type(plan, key, value, hint):
    line = only_problem(plan, f"{key}={value}")
    assert f"cloudstack-ec2:{key} = {value!r}: {value.rsplit('.', 1)[1]!r} is not an" in line and hint in line


@pytest.mark.parametrize("key", ["routerInstanceType", "managementInstanceType"])
def test_a_type_known_not_to_be_nitro_is_refused_offline(plan, key):
    assert catalog.instance_facts("t2.micro") is None  # judged by its family, not the table
    line = only_problem(plan, f"{key}=t2.micro")
    assert "is a xen type (the t2 family is not built on the AWS Nitro System)" in line


def test_metal_of_a_xen_family_is_nitro(plan):
    result = plan("routerInstanceType=i3.metal")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("value", ["t3.nano", "t3.micro"])
def test_router_type_with_too_few_addresses_per_interface_is_a_settings_problem(plan, value):
    line = only_problem(plan, f"routerInstanceType={value}")
    assert f"cloudstack-ec2:routerInstanceType = {value!r}: holds at most 2 private IPv4" in line
    assert "the router's interface needs 3" in line and "Accepted: a type with at least 3" in line


def test_router_type_with_too_few_addresses_is_a_json_problem(capsys):
    import json

    result = cli(capsys, "plan", "--stack", "dev", "--set", "routerInstanceType=t3.nano", "--json")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [problem] = json.loads(result.stdout)["problems"]
    assert problem["key"] == "cloudstack-ec2:routerInstanceType" and problem["value"] == "t3.nano"


def test_router_addresses_per_interface_come_from_aws_when_the_table_lacks_the_type():
    from components.model.settings import InstanceFacts

    def lookup(name, limit):
        return lambda t: (InstanceFacts(t, "nitro", False, ("x86_64",), 2, 4096, (), limit) if t == name
                          else catalog.instance_facts(t))

    values = {**VALID, "routerInstanceType": "x9.large"}
    with pytest.raises(SettingsError) as refused:
        parse_settings(values, lookup("x9.large", 2))
    assert [p.key for p in refused.value.problems] == ["routerInstanceType"]
    assert "holds at most 2 private IPv4" in refused.value.problems[0].message
    assert parse_settings(values, lookup("x9.large", 3)).router_instance_type == "x9.large"


def test_unknown_plausible_type_warns_with_the_nearest(plan):
    result = plan("routerInstanceType=c5n.9xlarge")
    assert result.returncode == 0, result.stderr
    warning = next(w for w in result.stdout.splitlines() if "routerInstanceType c5n.9xlarge" in w)
    assert "is not in the offline table" in warning and "the table's nearest type is c5n.xlarge" in warning


def test_unknown_db_class_warns_with_the_nearest(plan):
    result = plan("dbInstanceClass=db.t5g.medium")
    assert result.returncode == 0, result.stderr
    warning = next(w for w in result.stdout.splitlines() if "dbInstanceClass db.t5g.medium" in w)
    assert "is not in this program's table of RDS classes" in warning
    assert "the table's nearest class is db.t4g.medium" in warning


def test_the_aws_keys_are_those_the_pinned_provider_reads():
    import inspect
    import re

    from pulumi_aws.config import vars as provider_config

    from components.model.settings.provider import AWS_PROVIDER_KEYS

    read = re.findall(r"__config__\.get\w*\('(\w+)'\)", inspect.getsource(provider_config))
    assert read and sorted(AWS_PROVIDER_KEYS) == sorted(read)


def test_partition_of_each_region_form():
    from components.model import regions

    assert [regions.partition_of(r) for r in ("us-isob-east-1", "us-iso-west-1", "eu-isoe-west-1",
                                              "us-isof-south-1", "us-gov-east-1", "il-central-1")] == [
        "aws-iso-b", "aws-iso", "aws-iso-e", "aws-iso-f", "aws-us-gov", "aws"]
    assert all(regions.region_problem(r) is None for r in regions.known_regions())


@pytest.mark.parametrize("name, expected", [
    ("c5n.larg", "c5n.large"),       # a misspelt size of a known family
    ("c5m.large", "c5.large"),       # a misspelt family of a known size
    ("t3.small", None),              # a real type of another family: no lookalike offered
    ("t3.nano", None),
])
def test_nearest_type_keeps_the_family_or_the_size(name, expected):
    from components.model.settings.instancetypes import nearest_known_type
    assert nearest_known_type(name) == expected


def test_plan_does_not_offer_a_lookalike_of_another_family(plan):
    result = plan("routerInstanceType=t3.small")
    assert result.returncode == 0, result.stderr
    warning = next(w for w in result.stdout.splitlines() if "routerInstanceType t3.small" in w)
    assert "nearest type" not in warning


def test_plan_says_which_region_an_unset_region_means(plan):
    result = plan("aws:region=")
    assert result.returncode == 0, result.stderr
    assert "aws:region is not set: this plan assumes us-east-1" in result.stdout
