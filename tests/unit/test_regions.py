"""Partitions and regions: AMI owner, ARNs and service principals per partition, and the
refusal of regions without Transit Gateway multicast (components.model.regions, program, mocks)."""

from __future__ import annotations

import json

import pytest

from components.model import regions
from components.model.settings import SettingsError

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def test_partition_of_region():
    assert regions.partition_of("us-east-1") == "aws"
    assert regions.partition_of("eu-central-1") == "aws"
    assert regions.partition_of("us-gov-west-1") == "aws-us-gov"
    assert regions.partition_of("cn-northwest-1") == "aws-cn"


def test_canonical_owner_per_partition():
    assert regions.canonical_ami_owner("aws") == "099720109477"
    assert regions.canonical_ami_owner("aws-us-gov") == "513442679011"
    assert regions.canonical_ami_owner("aws-cn") == "837727238323"
    assert regions.canonical_ami_owner("aws-iso") is None


def test_service_principal_as_the_provider_answers_it():
    assert regions.service_principal("ec2", "aws") == "ec2.amazonaws.com"
    assert regions.service_principal("ec2", "aws-us-gov") == "ec2.amazonaws.com"
    assert regions.service_principal("ec2", "aws-cn") == "ec2.amazonaws.com.cn"
    assert regions.service_principal("rds", "aws-cn") == "rds.amazonaws.com"


def test_multicast_table():
    assert regions.tgw_multicast("us-gov-west-1") is True
    assert regions.tgw_multicast("ap-southeast-5") is False
    assert regions.tgw_multicast("xx-nowhere-9") is None
    assert not regions.TGW_MULTICAST_REGIONS & regions.TGW_WITHOUT_MULTICAST


def test_region_without_multicast_is_refused_naming_aws_region():
    problems, warnings = regions.check_region("ap-southeast-5")
    assert warnings == [] and [p.key for p in problems] == ["aws:region"]
    assert str(problems[0]).startswith("aws:region = 'ap-southeast-5': Transit Gateway multicast is not offered")
    problems, warnings = regions.check_region("xx-nowhere-9")
    assert problems == [] and "xx-nowhere-9" in warnings[0]


def test_rds_ca_bundle_of_each_partition():
    # RDS User Guide, certificate bundles by AWS Region (and its China Regions copy).
    assert regions.rds_ca_bundle_url("eu-west-1") == \
        "https://truststore.pki.rds.amazonaws.com/eu-west-1/eu-west-1-bundle.pem"
    assert regions.rds_ca_bundle_url("us-gov-east-1") == \
        "https://truststore.pki.us-gov-west-1.rds.amazonaws.com/us-gov-east-1/us-gov-east-1-bundle.pem"
    assert regions.rds_ca_bundle_url("cn-northwest-1") == \
        "https://rds-truststore.s3.cn-north-1.amazonaws.com.cn/cn-northwest-1/cn-northwest-1-bundle.pem"
    assert regions.rds_ca_bundle_url("us-iso-east-1") is None


def test_region_without_a_known_rds_ca_bundle_is_refused_naming_aws_region():
    problems, _ = regions.check_region("us-iso-east-1")
    assert [p.key for p in problems] == ["aws:region"]
    assert "RDS certificate bundle" in str(problems[0]) and "aws-iso" in str(problems[0])


# --- the program in each partition ---------------------------------------------------------

@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "us-gov-west-1", "cn-north-1"])
def test_dev_stack_plans_in_region(deploy, region):
    d = deploy(**{"aws:region": region})
    partition = regions.partition_of(region)
    amis = [a for t, a in d.run.invokes if t == "aws:ec2/getAmi:getAmi"]
    assert amis and all(a["owners"] == [regions.canonical_ami_owner(partition)] for a in amis)
    principal = regions.service_principal("ec2", partition)
    for role in d.of_type(ROLE):
        trust = json.loads(role.inputs["assumeRolePolicy"])
        assert [s["Principal"]["Service"] for s in trust["Statement"]] == [principal], role.name
    arns = [r for p in d.of_type(ROLE_POLICY) for s in json.loads(p.inputs["policy"])["Statement"]
            for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]) if r != "*"]
    assert arns and all(a.startswith(f"arn:{partition}:") for a in arns), arns
    assert all(f":{region}:" in a for a in arns if ":ssm:" in a or ":secretsmanager:" in a)


def test_region_without_multicast_stops_before_anything_is_declared(deploy, monkeypatch):
    from components import program

    declared = []
    monkeypatch.setattr(program, "declare", lambda *a, **k: declared.append(a))
    with pytest.raises(SettingsError) as err:
        deploy(**{"aws:region": "ap-southeast-5"})
    assert "aws:region = 'ap-southeast-5'" in str(err.value) and declared == []


def test_unknown_region_plans_with_a_warning(deploy):
    d = deploy(**{"aws:region": "ca-west-1"})
    assert any("ca-west-1" in w and "Transit Gateway multicast" in w for w in d.run.warnings)


def test_a_misspelt_region_of_a_known_partition_gets_the_nearest_known_one():
    """`us-est-1` is a well-formed name (a region newer than the table looks the same), so it
    stays a warning, which names the nearest region the table knows."""
    problems, warnings = regions.check_region("us-est-1")
    assert problems == [] and len(warnings) == 1
    assert "If it is a typo: did you mean " in warnings[0] and "us-east-1" in warnings[0].split("typo")[1]
    # A region merely missing from the table gets no guess.
    assert "typo" not in regions.check_region("ca-west-1")[1][0]
