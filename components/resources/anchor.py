"""The trust anchor of the KVM hosts: a customer-managed KMS key only the management server
may encrypt with.

The management server publishes two values the hosts act on as root: its SSH public key
(put in the host user's authorized_keys) and its cloudstack-management version (the agent
version installed). It writes them as SecureString parameters under this key, and a host
accepts a value only when SSM reports it as a SecureString under this very key.

Why that proves who wrote it: Parameter Store encrypts a SecureString with the caller's
own credentials, so PutParameter of a SecureString needs kms:Encrypt on the key (AWS
Systems Manager User Guide, "How AWS Systems Manager Parameter Store uses AWS KMS"), and
this key's policy allows kms:Encrypt to the management server's role alone. A principal
with ssm:PutParameter on every parameter can still overwrite the parameter, but only as a
String, or as a SecureString under another key (aws/ssm, which every principal of the
account may use): the hosts refuse both. The account's administrators keep the key's
administration (they could rewrite the policy, as they could replace the instances), but
the policy gives no principal of the account encryption through IAM alone.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

#: What the account's administrators (the deployer, through IAM) may do with the key: manage
#: it, never use it to encrypt or decrypt (AWS KMS Developer Guide, "Allows key
#: administrators to administer the KMS key", without kms:Create* so that no grant with
#: more than Decrypt can be made, see _GRANT_OPERATIONS).
KEY_ADMIN_ACTIONS = (
    "kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:GetKeyRotationStatus",
    "kms:EnableKeyRotation", "kms:DisableKeyRotation", "kms:ListResourceTags", "kms:TagResource",
    "kms:UntagResource", "kms:UpdateKeyDescription", "kms:EnableKey", "kms:DisableKey",
    "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:ListGrants", "kms:RevokeGrant", "kms:RetireGrant",
)
#: The operations a grant on the key may give: the hosts read, nobody else writes.
_GRANT_OPERATIONS = ("Decrypt",)
#: What the management server's role may do, through SSM only: write (Encrypt) and read
#: back to compare (Decrypt). Standard-tier parameters are encrypted with Encrypt directly;
#: advanced ones would need GenerateDataKey, which is not given.
WRITER_ACTIONS = ("kms:Encrypt", "kms:Decrypt")


def anchor_key_policy(account_root: str, writer_role_arn: str, ssm_service: str) -> dict:
    """The key policy (a dict for json.dumps): the account root (`arn:<partition>:iam::<account>:root`,
    i.e. IAM principals the account allows) administers the key and may create Decrypt-only
    grants; `writer_role_arn` alone may Encrypt and Decrypt, and only through `ssm_service`
    (`ssm.<region>.<dns suffix>`, the kms:ViaService condition key)."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "KeyAdministration", "Effect": "Allow", "Principal": {"AWS": account_root},
         "Action": list(KEY_ADMIN_ACTIONS), "Resource": "*"},
        {"Sid": "DecryptOnlyGrants", "Effect": "Allow", "Principal": {"AWS": account_root},
         "Action": "kms:CreateGrant", "Resource": "*",
         "Condition": {"ForAllValues:StringEquals": {"kms:GrantOperations": list(_GRANT_OPERATIONS)}}},
        {"Sid": "ManagementServerWrites", "Effect": "Allow", "Principal": {"AWS": writer_role_arn},
         "Action": list(WRITER_ACTIONS), "Resource": "*",
         "Condition": {"StringEquals": {"kms:ViaService": ssm_service}}},
    ]}


def anchor_key(name: str, writer_role: aws.iam.Role, tags: dict, opts: pulumi.ResourceOptions) -> aws.kms.Key:
    """The deployment's anchor key (symmetric, rotated yearly by KMS)."""
    partition = aws.get_partition()
    account = aws.get_caller_identity().account_id
    region = aws.get_region().region
    policy = writer_role.arn.apply(lambda arn: json.dumps(anchor_key_policy(
        f"arn:{partition.partition}:iam::{account}:root", arn, f"ssm.{region}.{partition.dns_suffix}")))
    return aws.kms.Key(
        f"{name}-anchor-key", description="Signs the values the KVM hosts trust (the management server's SSH key "
        "and version): only the management server's role may encrypt with it",
        enable_key_rotation=True, deletion_window_in_days=7, policy=policy, tags=tags, opts=opts)


def reader_grant(name: str, key_arn: pulumi.Input[str], reader_role: aws.iam.Role,
                 opts: pulumi.ResourceOptions) -> aws.kms.Grant:
    """A grant that lets `reader_role` Decrypt with the key and nothing else (a grant needs no
    IAM permission of the grantee: AWS KMS Developer Guide, "Grants in AWS KMS")."""
    return aws.kms.Grant(f"{name}-anchor-read", key_id=key_arn, grantee_principal=reader_role.arn,
                         operations=list(_GRANT_OPERATIONS), opts=opts)
