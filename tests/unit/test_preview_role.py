"""The preview role's permissions (docs/ci/preview-role-policy.json) are exactly what
`pulumi preview` of this program asks AWS: every data source the program calls, collected
from the offline runner (which answers each invoke the program makes), mapped to the IAM
actions the provider's implementation of that data source calls; plus the state bucket
and the stack's secrets key. A new data source in the program fails here until the
policy (and this table, with its source) says what it needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.cli import offline
from components.model.settings import NAMESPACE
from components.resources.hosts import DEPLOYMENT_TAG, HOST_ROLE

ROOT = Path(__file__).resolve().parents[2]
POLICY = json.loads((ROOT / "docs" / "ci" / "preview-role-policy.json").read_text())

#: Data source (Pulumi invoke token) -> the IAM actions its implementation calls
#: (hashicorp/terraform-provider-aws, internal/service/<service>/*_data_source.go, which
#: pulumi-aws bridges). sts:GetCallerIdentity needs no permission (AWS STS API Reference,
#: GetCallerIdentity); region, partition and service principal are answered locally.
ACTIONS_OF_INVOKE = {
    "aws:ec2/getAmi:getAmi": {"ec2:DescribeImages"},
    "aws:ec2/getInstanceTypes:getInstanceTypes": {"ec2:DescribeInstanceTypes"},
    "aws:ec2/getInstanceType:getInstanceType": {"ec2:DescribeInstanceTypes"},
    "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings": {"ec2:DescribeInstanceTypeOfferings"},
    "aws:ec2/getInstances:getInstances": {"ec2:DescribeInstances"},
    # ec2_instance_data_source.go: DescribeInstances, DescribeInstanceTypes (burstable?),
    # DescribeInstanceAttribute (disableApiStop, disableApiTermination, userData), the root
    # and EBS volumes (DescribeVolumes) and, for burstable types, the credit specification.
    "aws:ec2/getInstance:getInstance": {"ec2:DescribeInstances", "ec2:DescribeInstanceTypes",
                                        "ec2:DescribeInstanceAttribute", "ec2:DescribeVolumes",
                                        "ec2:DescribeInstanceCreditSpecifications"},
    "aws:ec2/getSubnet:getSubnet": {"ec2:DescribeSubnets"},
    "aws:ec2/getPrefixList:getPrefixList": {"ec2:DescribePrefixLists"},
    "aws:ec2/getRouteTable:getRouteTable": {"ec2:DescribeRouteTables"},
    "aws:index/getAvailabilityZones:getAvailabilityZones": {"ec2:DescribeAvailabilityZones"},
    # ssm_parameters_by_path_data_source.go: GetParametersByPath (paged).
    "aws:ssm/getParametersByPath:getParametersByPath": {"ssm:GetParametersByPath"},
    "aws:index/getCallerIdentity:getCallerIdentity": set(),
    "aws:index/getRegion:getRegion": set(),
    "aws:index/getPartition:getPartition": set(),
    "aws:index/getServicePrincipal:getServicePrincipal": set(),
}

EXISTING_VPC = {
    "vpcId": "vpc-0e0e0e0e0e0e0e0e1",
    "cloudstackSubnetId": "subnet-0c0c0c0c0c0c0c0c1",
    "dbSubnetIds": ["subnet-0d0d0d0d0d0d0d0d1", "subnet-0d0d0d0d0d0d0d0d2"],
    "routeTableIds": ["rtb-0a0a0a0a0a0a0a0a1", "rtb-0a0a0a0a0a0a0a0a2"],
}


def stack_config(name: str) -> dict:
    return dict(yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())["config"])


def invokes_of(config: dict, previous_root: str | None = None, existing=()) -> set[str]:
    from components.program import build

    run = offline.run_offline(build, config, project="cloudstack-ec2", stack="dev",
                              region=str(config.get("aws:region", "us-east-1")),
                              subnet_cidrs={"cloudstack": str(config[f"{NAMESPACE}:cloudstackSubnetCidr"])},
                              previous_outputs={"deployment": {"parameterRoot": previous_root}} if previous_root
                              else None, existing_instances=existing)
    return {token for token, _ in run.invokes}


@pytest.fixture(scope="module")
def invoked() -> set[str]:
    """Every data source of a first run of each example stack, of a stack in an existing VPC,
    and of a later run with hosts already running (their types are read back)."""
    tokens: set[str] = set()
    for name in ("dev", "training"):
        tokens |= invokes_of(stack_config(name))
    existing_vpc = stack_config("dev")
    existing_vpc.update({f"{NAMESPACE}:{k}": v for k, v in EXISTING_VPC.items()})
    tokens |= invokes_of(existing_vpc)
    root = "/cloudstack-ec2/dev-0123456789abcdef"
    host = offline.ExistingInstance(id="i-00000000000000001", instance_type="m5zn.metal", tags={
        "Project": "cloudstack-ec2", "Stack": "dev", "Role": HOST_ROLE, "HostIndex": "0", DEPLOYMENT_TAG: root})
    tokens |= invokes_of(stack_config("dev"), previous_root=root, existing=[host])
    return tokens


def statement(sid: str) -> dict:
    [found] = [s for s in POLICY["Statement"] if s["Sid"] == sid]
    assert found["Effect"] == "Allow"
    return found


def test_every_data_source_the_program_calls_is_known(invoked):
    assert invoked - set(ACTIONS_OF_INVOKE) == set(), "add the data source's IAM actions (with their source)"
    # The runs above reach the lookups that only some stacks make.
    assert {"aws:ec2/getSubnet:getSubnet", "aws:ec2/getInstance:getInstance",
            "aws:ec2/getPrefixList:getPrefixList", "aws:ec2/getRouteTable:getRouteTable",
            "aws:ssm/getParametersByPath:getParametersByPath"} <= invoked


def test_the_lookup_statement_is_exactly_what_the_program_needs(invoked):
    needed = set().union(*(ACTIONS_OF_INVOKE[t] for t in invoked)) - {"ssm:GetParametersByPath"}
    lookups = statement("ProgramLookups")
    assert set(lookups["Action"]) == needed
    # EC2's Describe* actions support no resource-level permissions (Service Authorization
    # Reference, Amazon EC2): "*" is their only resource.
    assert lookups["Resource"] == "*"


def test_the_bootstrap_marker_is_the_one_parameter_path_a_preview_reads():
    # resources.management.bootstrapped: GetParametersByPath on `<root>/bootstrap`, which
    # holds the marker alone; the root is /cloudstack-ec2/<stack>[/<deployment id>].
    marker = statement("BootstrapMarker")
    assert marker["Action"] == "ssm:GetParametersByPath"
    assert marker["Resource"] == "arn:aws:ssm:*:<ACCOUNT_ID>:parameter/cloudstack-ec2/*/bootstrap"


def test_the_upgrade_record_is_read_on_its_own_path():
    # program.lookups.upgrade_progress: GetParametersByPath on `<root>/upgrade`, which holds
    # the upgrade's progress record alone (naming.UPGRADE_PATH).
    import fnmatch

    from components.program import build

    record = statement("UpgradeRecord")
    assert record["Action"] == "ssm:GetParametersByPath"
    assert record["Resource"] == "arn:aws:ssm:*:<ACCOUNT_ID>:parameter/cloudstack-ec2/*/upgrade"
    # every path a later run reads is granted by one of the two statements (IAM's * spans slashes)
    config = stack_config("dev")
    run = offline.run_offline(build, config, project="cloudstack-ec2", stack="dev", region="us-east-1",
                              subnet_cidrs={"cloudstack": str(config[f"{NAMESPACE}:cloudstackSubnetCidr"])},
                              previous_outputs={"deployment": {"parameterRoot": "/cloudstack-ec2/dev/0a1b2c3d"}})
    paths = [a["path"] for token, a in run.invokes if token == "aws:ssm/getParametersByPath:getParametersByPath"]
    granted = [s["Resource"].split(":parameter", 1)[1] for s in (record, statement("BootstrapMarker"))]
    assert "/cloudstack-ec2/dev/0a1b2c3d/upgrade" in paths
    assert all(any(fnmatch.fnmatchcase(p, g) for g in granted) for p in paths), paths


def test_nothing_else_but_the_state_and_the_secrets_key():
    sids = {s["Sid"] for s in POLICY["Statement"]}
    assert sids == {"ProgramLookups", "BootstrapMarker", "UpgradeRecord", "StateRead", "StateLock", "StackSecrets"}
    for s in POLICY["Statement"]:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert all("*" not in a for a in actions), s["Sid"]
    assert set(statement("StateRead")["Action"]) == {"s3:GetObject", "s3:ListBucket"}
    # A preview writes only its lock (the DIY backend's .pulumi/locks/<org>/<project>/<stack>/).
    lock = statement("StateLock")
    assert set(lock["Action"]) == {"s3:PutObject", "s3:DeleteObject"}
    assert lock["Resource"].endswith("/.pulumi/locks/*")
    assert statement("StackSecrets")["Action"] == "kms:Decrypt"
    # No secret of the cloud: the registration's probe in a preview reads the API keys, and
    # without this permission it answers "cannot tell" (components/registration/client.py probe).
    # The two by-path reads are asserted exactly above.
    assert not any(a.startswith(("secretsmanager:", "ssm:")) for s in POLICY["Statement"]
                   if s["Sid"] not in ("BootstrapMarker", "UpgradeRecord")
                   for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))
