"""AWS's input rules (components.model.aws_constraints) and the offline runner that applies them.

The rules themselves are tested directly; the runner is tested with a tiny program
(so a refusal is shown to stop the run, naming the resource and the input); and the
real program is planned over a matrix of stacks, each of which must pass every rule.
"""

from __future__ import annotations

import base64

import pulumi
import pulumi_aws as aws
import pytest

from components.model import aws_constraints as c
from components.cli import offline

SG = "aws:ec2/securityGroup:SecurityGroup"


def messages(typ: str, name: str, inputs: dict) -> list[str]:
    return [str(v) for v in c.check_inputs(typ, name, inputs)]


# --- security groups -----------------------------------------------------------------------

def test_apostrophe_in_a_rule_description_is_refused_naming_the_input():
    found = c.check_inputs(SG, "db-sg", {"description": "ok", "ingress": [
        {"description": "fine"}, {"description": "MySQL from the server's address"}]})
    assert [(v.input, v.resource_name) for v in found] == [("ingress[1].description", "db-sg")]
    assert "\"'\"" in found[0].message and "validSecurityGroupRuleDescription" in found[0].source


def test_every_character_aws_documents_is_accepted():
    text = "testRule 123 ._-:/()#,@[]+=&;{}!$*"  # terraform-provider-aws's own valid example
    assert c.check_inputs(SG, "web", {"description": text, "ingress": [{"description": text}],
                                     "egress": [{"description": text}]}) == []


@pytest.mark.parametrize("bad", ["é", "`", "\"", "'", "<", ">", "%", "\n", "~", "?", "|", "\\"])
def test_other_characters_are_refused_in_descriptions(bad):
    assert messages(SG, "web", {"description": f"x{bad}y"})
    assert messages(SG, "web", {"description": "x", "egress": [{"description": f"x{bad}y"}]})


def test_description_length_limits():
    assert c.check_inputs(SG, "web", {"description": "a" * 255}) == []
    assert "at most 255" in messages(SG, "web", {"description": "a" * 256})[0]
    assert messages(SG, "web", {"description": "x", "ingress": [{"description": "a" * 256}]})


def test_security_group_name_may_not_start_with_sg():
    assert "may not start with 'sg-'" in messages(SG, "x", {"name": "sg-1", "description": "d"})[0]


# --- auto-naming ---------------------------------------------------------------------------

def test_auto_named_role_too_long_for_iam_is_refused():
    # pulumi-aws appends "-" and 7 hex digits: 56 + 8 = 64 fits, 57 + 8 does not.
    assert c.check_inputs("aws:iam/role:Role", "r" * 56, {}) == []
    found = c.check_inputs("aws:iam/role:Role", "r" * 57, {})
    assert found and "auto-named" in found[0].input and "at most 64" in found[0].message


def test_auto_named_rds_resources_are_lower_case_and_checked():
    assert c.autoname("aws:rds/parameterGroup:ParameterGroup", "Database-Params") == "database-params-abcdef0"
    assert c.check_inputs("aws:rds/instance:Instance", "database-mysql", {}) == []
    assert messages("aws:rds/instance:Instance", "d" * 60, {})  # 68 > 63
    assert messages("aws:rds/instance:Instance", "1db", {})  # must start with a letter
    assert messages("aws:rds/parameterGroup:ParameterGroup", "db_params", {})  # no underscore


def test_a_given_name_is_checked_instead_of_the_auto_name():
    assert c.check_inputs("aws:iam/role:Role", "r" * 80, {"name": "short"}) == []
    assert messages("aws:iam/role:Role", "r", {"name": "has space"})


# --- RDS, IAM, Secrets Manager, SSM, logs, tags, user data ---------------------------------

@pytest.mark.parametrize("value,ok", [
    ("cloudstack-dev-final-0a1b2c3d", True), ("cloudstack-a--b-final", False), ("1cloudstack", False),
    ("cloudstack-dev-", False), ("cloudstack.dev", False), ("c" * 255, True), ("c" * 256, False)])
def test_final_snapshot_identifier(value, ok):
    found = c.check_inputs("aws:rds/instance:Instance", "db", {"identifier": "db", "finalSnapshotIdentifier": value})
    assert (found == []) is ok, found


def test_rds_master_username():
    assert c.check_inputs("aws:rds/instance:Instance", "db", {"identifier": "db", "username": "csadmin"}) == []
    assert messages("aws:rds/instance:Instance", "db", {"identifier": "db", "username": "cs_admin"})
    assert messages("aws:rds/instance:Instance", "db", {"identifier": "db", "username": "a" * 17})


def test_iam_names_and_prefixes():
    assert messages("aws:iam/rolePolicy:RolePolicy", "p", {"name": "p" * 129})
    assert c.check_inputs("aws:iam/instanceProfile:InstanceProfile", "p", {"name": "p" * 128}) == []
    assert messages("aws:iam/role:Role", "r", {"namePrefix": "r" * 39})  # 64 - 26 = 38
    assert messages("aws:iam/role:Role", "r", {"name": "a/b"})


def test_secrets_manager_names():
    ok = {"namePrefix": "cloudstack-ec2/dev.x_y/db-master-"}
    assert c.check_inputs("aws:secretsmanager/secret:Secret", "s", ok) == []
    assert messages("aws:secretsmanager/secret:Secret", "s", {"namePrefix": "a b"})
    assert messages("aws:secretsmanager/secret:Secret", "s", {"namePrefix": "a" * 487})


@pytest.mark.parametrize("name,ok", [
    ("/cloudstack-ec2/dev/db-endpoint", True), ("/aws/x", False), ("/SSM-x/y", False), ("/a b/c", False),
    ("a/b", False), ("/" + "/".join("l" * 16), False), ("/" + "/".join("l" * 15), True), ("/" + "n" * 966, True), ("/" + "n" * 967, False)])
def test_ssm_parameter_names(name, ok):
    found = c.check_inputs("aws:ssm/parameter:Parameter", "p", {"name": name, "type": "String"})
    assert (found == []) is ok, found


def test_tags():
    assert c.check_inputs("aws:ec2/vpc:Vpc", "v", {"tags": {"Stack": "dev.a_b-c", "Name": "x"}}) == []
    assert messages("aws:ec2/vpc:Vpc", "v", {"tags": {"aws:x": "1"}})
    assert messages("aws:ec2/vpc:Vpc", "v", {"tags": {"k": "v" * 256}})
    assert messages("aws:ec2/vpc:Vpc", "v", {"tags": {"k" * 128: "v"}})
    assert messages("aws:ec2/vpc:Vpc", "v", {"tags": {"k": "it's"}})
    assert messages("aws:ec2/vpc:Vpc", "v", {"tags": {str(i): "v" for i in range(51)}})
    assert messages("aws:ec2/instance:Instance", "i", {"volumeTags": {"k": "a;b"}})


def test_user_data_limit_is_16_kib_before_base64():
    fits = base64.b64encode(b"x" * 16384).decode()
    assert c.check_inputs("aws:ec2/instance:Instance", "i", {"userDataBase64": fits}) == []
    assert messages("aws:ec2/instance:Instance", "i", {"userDataBase64": base64.b64encode(b"x" * 16385).decode()})


def test_log_group_retention_takes_only_the_documented_values():
    assert c.check_inputs("aws:cloudwatch/logGroup:LogGroup", "l", {"name": "/aws/rds/x/error",
                                                                    "retentionInDays": 30}) == []
    assert messages("aws:cloudwatch/logGroup:LogGroup", "l", {"name": "/aws/rds/x/error", "retentionInDays": 31})


def test_secret_values_are_unwrapped_before_checking():
    wrapped = {c._SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "value": "has space"}
    assert messages("aws:iam/role:Role", "r", {"name": wrapped})


# --- the offline runner applies the rules to every resource --------------------------------

class _Tiny:
    def __init__(self, description: str):
        aws.ec2.SecurityGroup("tiny-sg", description="tiny", ingress=[aws.ec2.SecurityGroupIngressArgs(
            protocol="tcp", from_port=1, to_port=1, cidr_blocks=["10.0.0.0/8"], description=description)])
        self.outputs = {}


def test_offline_run_refuses_what_aws_refuses_naming_resource_and_input():
    with pytest.raises(c.AwsInputError) as err:
        offline.run_offline(lambda: _Tiny("the server's port"), {}, project="p", stack="s", region="us-east-1")
    text = str(err.value)
    assert "'tiny-sg'" in text and "ingress[0].description" in text and "security group rule description" in text
    offline.run_offline(lambda: _Tiny("the server port"), {}, project="p", stack="s", region="us-east-1")


def test_plan_command_exits_2_naming_the_resource_and_input(tmp_path, capsys, monkeypatch):
    from components.cli import commands as cli

    (tmp_path / "Pulumi.yaml").write_text("name: cloudstack-ec2\nruntime: python\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  cloudstack-ec2:adminCidrs: ['10.0.0.0/8']\n")
    # The program passes every real rule (see the matrix below), so give one resource a
    # rule it breaks, to see what the command does with a refusal.
    monkeypatch.setitem(c.INPUT_RULES, "aws:ec2/vpc:Vpc", (("cidrBlock", c.Rule("test rule", "test", max_len=3)),))
    code = cli.main(["plan", "--dir", str(tmp_path), "--stack", "dev"])
    err = capsys.readouterr().err
    assert code == 2
    assert "aws:ec2/vpc:Vpc 'underlay-vpc': input cidrBlock = '10.0.0.0/16'" in err


def test_iam_document_sizes():
    import json

    small = json.dumps({"Version": "2012-10-17", "Statement": []}, indent=4)
    assert c.check_inputs("aws:iam/rolePolicy:RolePolicy", "p", {"name": "p", "policy": small}) == []
    big = json.dumps({"Statement": [{"Resource": ["arn:aws:ssm:x:1:parameter/" + "a" * 100] * 100}]})
    assert messages("aws:iam/rolePolicy:RolePolicy", "p", {"name": "p", "policy": big})
    assert messages("aws:iam/role:Role", "r", {"name": "r", "assumeRolePolicy": "x" * 2049})
    # White space does not count.
    assert c.check_inputs("aws:iam/role:Role", "r", {"name": "r", "assumeRolePolicy": "x" * 2000 + " " * 100}) == []


def test_a_roles_inline_policies_are_limited_together():
    # IAM counts all of a role's inline policies against one 10,240 (white space not
    # counted): two policies each under the limit can still be refused together.
    half = '{"Statement":"' + "x" * 5200 + '"}'
    assert c.check_role_inline_policies([("a-policy", "role-a", half), ("b-policy", "role-b", half)]) == []
    found = c.check_role_inline_policies([("a-session-manager", "role-a", half), ("a-policy", "role-a", half)])
    assert len(found) == 1
    assert found[0].resource_name == "a-policy" and "role-a" in found[0].message and "10240" in found[0].message


class _TwoPolicies:
    def __init__(self, size: int):
        role = aws.iam.Role("tiny-role", assume_role_policy='{"Version":"2012-10-17","Statement":[]}')
        for which in ("one", "two"):
            aws.iam.RolePolicy(f"tiny-{which}", role=role.name, policy='{"Statement":"' + "x" * size + '"}')
        self.outputs = {}


def test_offline_run_refuses_a_roles_inline_policies_over_their_total():
    with pytest.raises(c.AwsInputError) as err:
        offline.run_offline(lambda: _TwoPolicies(5200), {}, project="p", stack="s", region="us-east-1")
    assert "inline policies of role" in str(err.value) and "tiny-two" in str(err.value)
    offline.run_offline(lambda: _TwoPolicies(5000), {}, project="p", stack="s", region="us-east-1")


@pytest.mark.parametrize("prop, value", [("subnetId", "subnet-1"), ("vpcSecurityGroupIds", ["sg-1"]),
                                          ("sourceDestCheck", False), ("associatePublicIpAddress", False),
                                          ("ipv6AddressCount", 1), ("enablePrimaryIpv6", True),
                                          ("networkInterfaces", [{"deviceIndex": 1}])])
def test_an_instance_on_its_own_interface_takes_no_instance_level_network_settings(prop, value):
    on_eni = {"primaryNetworkInterface": {"networkInterfaceId": "eni-1"}}
    assert c.check_inputs("aws:ec2/instance:Instance", "router", on_eni) == []
    [found] = c.check_inputs("aws:ec2/instance:Instance", "router", {**on_eni, prop: value})
    assert found.input == prop and "primaryNetworkInterface" in found.message


def test_an_elastic_ip_on_both_an_instance_and_an_interface_is_flagged():
    assert c.check_inputs("aws:ec2/eip:Eip", "e", {"networkInterface": "eni-1"}) == []
    [found] = c.check_inputs("aws:ec2/eip:Eip", "e", {"networkInterface": "eni-1", "instance": "i-1"})
    assert "undefined" in found.message and "one of the two" in found.message


# --- private addresses per network interface, by instance type ------------------------------

class _RouterLike:
    """An instance launched on an interface with two secondary addresses, as the router's."""

    def __init__(self, instance_type: str):
        eni = aws.ec2.NetworkInterface("tiny-eni", subnet_id="subnet-1", private_ips_count=2)
        aws.ec2.Instance("tiny", instance_type=instance_type, ami="ami-1",
                         primary_network_interface=aws.ec2.InstancePrimaryNetworkInterfaceArgs(
                             network_interface_id=eni.id))
        self.outputs = {}


def test_an_interface_holds_no_more_addresses_than_its_instance_type_allows():
    assert c.interface_address_problem("c5n.large", 3) is None
    assert c.interface_address_problem("t3.small", 4) is None
    problem = c.interface_address_problem("t3.micro", 3)
    assert problem.startswith("PrivateIpAddressLimitExceeded") and "at most 2" in problem
    assert c.interface_address_problem("x9.unknown", 50) is None  # not listed: EC2 decides


def test_offline_run_refuses_an_instance_type_too_small_for_the_interfaces_addresses():
    with pytest.raises(c.AwsInputError, match="PrivateIpAddressLimitExceeded"):
        offline.run_offline(lambda: _RouterLike("t3.micro"), {}, project="p", stack="s", region="us-east-1")
    offline.run_offline(lambda: _RouterLike("t3.small"), {}, project="p", stack="s", region="us-east-1")
