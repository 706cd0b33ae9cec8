"""The real program, planned offline over a matrix of stacks: every input of every
resource must pass AWS's rules (components.model.aws_constraints; the offline runner raises
AwsInputError otherwise, as pulumi-aws's Check would stop `pulumi up` at preview)."""

from __future__ import annotations

import pytest

from components.model import aws_constraints

EXISTING_VPC = {
    "vpcId": "vpc-0e0e0e0e0e0e0e0e1",
    "cloudstackSubnetId": "subnet-0c0c0c0c0c0c0c0c1",
    "dbSubnetIds": ["subnet-0d0d0d0d0d0d0d0d1", "subnet-0d0d0d0d0d0d0d0d2"],
    "routeTableIds": ["rtb-0a0a0a0a0a0a0a0a1", "rtb-0a0a0a0a0a0a0a0a2"],
}
#: The longest stack name the program accepts (naming.stack_prefix), with every
#: character it accepts: it ends up in tags, SSM and secret names and the final snapshot id.
LONG_STACK = ("Prod.eu_central-1." + "x" * 63)[:63]

MATRIX = {
    "dev": ("dev", {}),
    "existing-vpc": ("dev", EXISTING_VPC),
    "1-host": ("dev", {"hostCount": 1}),
    "20-hosts": ("dev", {"hostCount": 20}),
    # The largest hostCount, in the partition with the longest ARNs and with the longest
    # stack name: the hosts' inline policy must stay within IAM's 10,240 characters.
    "98-hosts": ("dev", {"hostCount": 98}),
    "98-hosts-us-gov-west-1": ("dev", {"hostCount": 98, "aws:region": "us-gov-west-1"}),
    "98-hosts-long-stack-name": (LONG_STACK, {"hostCount": 98}),
    "mysql-8.0": ("dev", {"dbEngineVersion": "8.0"}),
    "mysql-8.4-multi-az": ("dev", {"dbEngineVersion": "8.4", "dbMultiAz": True}),
    "provisioned-efs": ("dev", {"efsThroughputMode": "provisioned", "efsProvisionedMibps": 256}),
    "long-stack-name": (LONG_STACK, {"dbSkipFinalSnapshot": False}),
    # A router pair: VRRP in the routers' group, the takeover's grants over given route tables,
    # and the longest names and ARNs with the most hosts a pair leaves room for.
    "router-pair-existing-vpc": ("dev", {**EXISTING_VPC, "routerCount": 2}),
    "router-pair-97-hosts-us-gov-long-stack-name": (LONG_STACK, {"hostCount": 97, "routerCount": 2,
                                                                 "aws:region": "us-gov-west-1"}),
}


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_input_passes_aws_rules(deploy, case):
    stack, overrides = MATRIX[case]
    d = deploy(stack, **overrides)  # raises AwsInputError naming the resource and input
    hosts = overrides.get("hostCount", 3)
    assert len(d.host_instances()) == hosts
    # The check really ran over these registrations: re-checking them finds nothing,
    # and they include the inputs the rules are about.
    checked = [r for r in d.registrations if r.type in aws_constraints.INPUT_RULES]
    assert {r.type for r in checked} >= {"aws:ec2/securityGroup:SecurityGroup", "aws:iam/role:Role",
                                         "aws:rds/instance:Instance", "aws:ssm/parameter:Parameter",
                                         "aws:secretsmanager/secret:Secret"}
    assert [v for r in d.registrations
            for v in aws_constraints.check_inputs(r.type, r.name, r.inputs,
                                                  region=overrides.get("aws:region", "us-east-1"))] == []


def test_the_hosts_inline_policy_does_not_grow_with_the_hosts(deploy):
    # One `host-ready/*` resource for every host: IAM allows 10,240 characters per inline
    # policy (aws_constraints.IAM_DOCUMENT_LIMITS), one ARN per host outgrew it at 98 hosts.
    def host_policies(d):
        return [r.inputs["policy"] for r in d.of_type("aws:iam/rolePolicy:RolePolicy") if "kvm-host" in r.name]

    few, many = host_policies(deploy("dev", hostCount=1)), host_policies(deploy("dev", hostCount=98))
    assert few and sorted(map(len, few)) == sorted(map(len, many))
    assert any("/host-ready/*" in p for p in many)


def test_long_stack_name_reaches_the_names_aws_checks(deploy):
    d = deploy(LONG_STACK, dbSkipFinalSnapshot=False)
    db = d.get("aws:rds/instance:Instance", "database-mysql")
    assert db.inputs["finalSnapshotIdentifier"].startswith("cloudstack-prod-eu-central-1-xxx")
    assert any(LONG_STACK in p.inputs["name"] for p in d.of_type("aws:ssm/parameter:Parameter"))


def test_offline_runs_leave_pickle_as_they_found_it(deploy):
    # pulumi.dynamic wraps pickle's _batch_setitems per provider it pickles and never
    # restores it; across the matrix's runs the chain would exceed the recursion limit.
    import pickle

    before = pickle._Pickler._batch_setitems
    deploy(hostCount=5)
    assert pickle._Pickler._batch_setitems is before
