"""BootScriptBucket: the deployment's private S3 bucket holding the role scripts (boot stage 2).

EC2 takes at most 16 KiB of user data; the user data carries only what an instance
needs before its network works and a launcher (userdata/stage2.sh) that fetches the
role script from here, checks its sha256 and runs it (docs/boot.md). The objects and
their keys come from components.boot.boot_objects (pure); this component only
declares them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Optional

import pulumi
import pulumi_aws as aws

from components.model import naming
from components import boot


@dataclass(frozen=True)
class BootScriptBucketArgs:
    stack: str
    #: role -> its script object (components.boot.boot_objects()).
    objects: Mapping[str, boot.BootObject]
    tags: dict = field(default_factory=dict)


class BootScriptBucket(pulumi.ComponentResource):
    """An S3 bucket named `cloudstack-ec2-<stack>-<unique id>`: encrypted at rest
    (SSE-S3), every kind of public access blocked, ACLs disabled (BucketOwnerEnforced),
    requests without TLS denied by its policy. It holds one object per role script,
    `boot/<role>-<sha256>.sh`. `force_destroy`: it only holds generated scripts, so
    `pulumi destroy` may empty it.

    It also holds the KVM hosts' packages of the deployed CloudStack version,
    `packages/<version>/<package>.deb`, which the first management server uploads at
    boot (upstream repositories may drop an older patch release; hosts added later
    install that exact version from here).

    Outputs: bucket_name; object_arn(role) for the instance roles' s3:GetObject grant;
    packages_arn (`arn:<partition>:s3:::<bucket>/packages/*`) for the packages' grants;
    objects (role -> BucketObjectv2) for instances to depend on.
    """

    def __init__(self, name: str, args: BootScriptBucketArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudstack-ec2:index:BootScriptBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        bucket = aws.s3.Bucket(name, bucket_prefix=naming.boot_bucket_prefix(args.stack), force_destroy=True,
                               tags=tags, opts=child)
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"), opts=child)
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"))], opts=child)
        partition = aws.get_partition().partition
        # S3 refuses concurrent changes of one bucket's policy and public access block
        # ("OperationAborted: A conflicting conditional operation"): one after the other.
        aws.s3.BucketPolicy(
            f"{name}-tls-only", bucket=bucket.id,
            policy=bucket.bucket.apply(
                lambda b: json.dumps(boot.tls_only_bucket_policy(boot.s3_bucket_arn(partition, b)))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]))

        self.objects: dict[str, aws.s3.BucketObjectv2] = {}
        self._object_arns: dict[str, pulumi.Output[str]] = {}
        for role, obj in sorted(args.objects.items()):
            # The key holds the content's hash: a changed script is a NEW object (the
            # old one is deleted after it), never an overwrite of the one a running
            # instance's user data names (docs/boot.md, "Changing a role script").
            self.objects[role] = aws.s3.BucketObjectv2(
                f"{name}-{role}", bucket=bucket.id, key=obj.key, content=obj.content,
                content_type="text/x-shellscript", tags={**tags, "Role": role},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[ownership, encryption]))
            self._object_arns[role] = bucket.bucket.apply(
                lambda b, key=obj.key: boot.s3_object_arn(partition, b, key))

        self.bucket_name = bucket.bucket
        self.packages_arn: pulumi.Output[str] = bucket.bucket.apply(
            lambda b: boot.s3_object_arn(partition, b, f"{boot.PACKAGES_KEY_PREFIX}*"))
        self.register_outputs({"bucket_name": self.bucket_name,
                               "object_keys": {role: obj.key for role, obj in args.objects.items()}})

    def object_arn(self, role: str) -> pulumi.Output[str]:
        """ARN of `role`'s script object: what that role's instances may s3:GetObject, and nothing else."""
        return self._object_arns[role]
