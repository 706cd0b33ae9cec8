"""BootScriptBucket: the private bucket of the role scripts (boot stage 2), its objects,
who may read which, and what the instances wait for."""

from __future__ import annotations

import json

import pytest

from components.model import aws_constraints
from components.model import naming
from components import boot

BUCKET = "aws:s3/bucket:Bucket"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ROLES = ("router", "management", "kvm-host")


def s3_grants(dev) -> dict[str, set[str]]:
    """role -> the S3 resources its inline policy allows, per action."""
    out = {}
    for role in ROLES:
        doc = json.loads(dev.get(ROLE_POLICY, f"{role}-policy").inputs["policy"])
        out[role] = {(a, r) for s in doc["Statement"] for a in s["Action"] for r in s["Resource"]
                     if a.startswith("s3:")}
    return out


def test_bucket_is_private_encrypted_owner_enforced_and_tls_only(dev):
    (bucket,) = dev.of_type(BUCKET)
    assert bucket.inputs["bucketPrefix"] == naming.boot_bucket_prefix("dev") == "cloudstack-ec2-dev-"
    assert bucket.inputs["forceDestroy"] is True, "holds only generated scripts: destroy may empty it"
    assert "acl" not in bucket.inputs and "policy" not in bucket.inputs
    (block,) = dev.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(block.inputs[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                                 "restrictPublicBuckets"))
    (ownership,) = dev.of_type("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    (sse,) = dev.of_type("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    (policy,) = dev.of_type("aws:s3/bucketPolicy:BucketPolicy")
    name = bucket.state["bucket"]
    (statement,) = json.loads(policy.inputs["policy"])["Statement"]
    assert statement == {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                         "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
                         "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    # S3 refuses a policy change while the public access block is being changed.
    assert (block.type, block.name) in dev.depends_on_names(policy)
    for r in (block, ownership, sse, policy):
        assert r.inputs["bucket"] == bucket.id


def test_one_object_per_role_script_keyed_by_its_hash(dev):
    objects = {o.name: o for o in dev.of_type(OBJECT)}
    # Each role's script, the CloudWatch agent's installer every role runs and the
    # library's second part every role script sources.
    assert set(objects) == {f"boot-scripts-{r}" for r in (*ROLES, boot.AGENT_OBJECT, boot.LIBRARY_OBJECT)}
    files = boot.load_boot_files()
    scripts = {**{r: boot.ROLE_SCRIPTS[r] for r in ROLES}, boot.AGENT_OBJECT: "cloudwatch-agent.sh",
               boot.LIBRARY_OBJECT: "library.sh"}
    for role, script in scripts.items():
        o = objects[f"boot-scripts-{role}"]
        expected = boot.boot_object(role, files)
        assert o.inputs["key"] == expected.key == f"boot/{role}-{expected.sha256}.sh"
        assert o.inputs["content"] == files[script]
        assert aws_constraints.S3_OBJECT_KEY.problems(o.inputs["key"]) == []


def test_each_role_may_read_exactly_its_own_object(dev):
    bucket = dev.get(BUCKET, "boot-scripts").state["bucket"]
    grants = s3_grants(dev)
    agent = ("s3:GetObject", f"arn:aws:s3:::{bucket}/{boot.boot_object(boot.AGENT_OBJECT).key}")
    library = ("s3:GetObject", f"arn:aws:s3:::{bucket}/{boot.boot_object(boot.LIBRARY_OBJECT).key}")
    packages = f"arn:aws:s3:::{bucket}/packages/*"
    # The agent's packages of the deployed version: the first management server writes
    # them, the hosts read them; nothing else touches them.
    extra = {"router": set(), "management": {("s3:PutObject", packages)}, "kvm-host": {("s3:GetObject", packages)}}
    for role in ROLES:
        assert grants[role] == {("s3:GetObject", f"arn:aws:s3:::{bucket}/{boot.boot_object(role).key}"),
                                agent, library} | extra[role]
    # No role may list the bucket or read another role's script.
    assert len({r for g in grants.values() for _, r in g}) == 6


def test_grants_follow_the_partition(deploy):
    gov = deploy(**{"aws:region": "us-gov-west-1"})
    for role, grant in s3_grants(gov).items():
        # its script, the agent's installer and the library; the hosts' packages (management, KVM hosts)
        assert len(grant) == (3 if role == "router" else 4)
        for _, arn in grant:
            assert arn.startswith("arn:aws-us-gov:s3:::cloudstack-ec2-dev-"), (role, arn)


def test_every_instance_waits_for_its_own_boot_object(dev):
    for inst in dev.instances():
        role = "kvm-host" if inst.name.startswith("kvm-host-") else inst.name
        deps = dev.depends_on_names(inst)
        assert (OBJECT, f"boot-scripts-{role}") in deps, inst.name
        assert {n for t, n in deps if t == OBJECT} == {f"boot-scripts-{role}",
                                                        f"boot-scripts-{boot.AGENT_OBJECT}",
                                                        f"boot-scripts-{boot.LIBRARY_OBJECT}"}, inst.name


def test_user_data_names_the_bucket_and_the_roles_object(dev):
    bucket = dev.get(BUCKET, "boot-scripts").state["bucket"]
    for inst in dev.instances():
        role = "kvm-host" if inst.name.startswith("kvm-host-") else inst.name
        payload = boot.decode_user_data(inst.inputs["userDataBase64"])
        assert f'CSEC2_STAGE2_BUCKET="{bucket}"' in payload
        assert f'CSEC2_STAGE2_KEY="{boot.boot_object(role).key}"' in payload
        assert f'CSEC2_AGENT_KEY="{boot.boot_object(boot.AGENT_OBJECT).key}"' in payload
        assert f'CSEC2_LIBRARY_KEY="{boot.boot_object(boot.LIBRARY_OBJECT).key}"' in payload


@pytest.mark.parametrize("prefix, problem", [
    ("Cloudstack-ec2-", "refused: 'C'"), ("cloudstack_ec2-", "refused: '_'"), ("-cloudstack", "must start"),
    ("a..b-", "two adjacent periods"), ("xn--cloud", "may not start with 'xn--'"), ("c" * 38, "at most 37")])
def test_bucket_prefix_rules(prefix, problem):
    found = aws_constraints.check_inputs(BUCKET, "boot-scripts", {"bucketPrefix": prefix})
    assert found and any(problem in v.message for v in found), found


@pytest.mark.parametrize("key, problem", [
    ("/boot/x.sh", "may not start with '/'"), ("boot//x.sh", "'//'"), ("boot/../x.sh", "'..'"),
    ("boot/x y.sh", "refused: ' '"), ("k" * 1025, "at most 1024"), ("", "shorter than 1")])
def test_object_key_rules(key, problem):
    found = aws_constraints.check_inputs(OBJECT, "boot-scripts-router", {"key": key})
    assert found and any(problem in v.message for v in found), found


@pytest.mark.parametrize("name", ["cloudstack-ec2-dev-20261130000000000000000001", "abc", "a.b-c"])
def test_good_bucket_names_pass(name):
    assert aws_constraints.check_inputs(BUCKET, "b", {"bucket": name}) == []


def test_stack_names_always_give_a_valid_prefix():
    for stack in ("dev", "Prod_EU.1", "x" * 63, "a-b"):
        prefix = naming.boot_bucket_prefix(stack)
        assert aws_constraints.S3_BUCKET_NAME_PREFIX.problems(prefix) == [], (stack, prefix)
        assert aws_constraints.S3_BUCKET_NAME.problems(prefix + "2" * 26) == [], (stack, prefix)
