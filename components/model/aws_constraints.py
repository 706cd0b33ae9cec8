"""What AWS refuses in the strings (and a few numbers) this program sends it.

Pure module (no Pulumi import). Pulumi's mocks accept any input; real AWS, and the
pulumi-aws provider's Check (which runs terraform-provider-aws's validators), refuse
e.g. an apostrophe in a security group rule description — at preview, with nothing
created. `check_inputs(type, name, inputs)` states those rules for every resource type
the program declares; the offline runner (components/cli/offline.py) applies it to every
resource the program registers, so `cloudstack-ec2 plan` and the unit tests fail where
`pulumi up` would.

Each rule names its source: the AWS API reference (the operation and parameter) and,
where the provider refuses earlier than AWS, the terraform-provider-aws validator
(file under internal/service/). Inputs arrive as the engine sees them: camelCase
property names; secret values wrapped in Pulumi's secret envelope (unwrapped here).

Auto-naming: when the program gives no `name`, pulumi-aws names the resource
`<logical name>-<7 random hex digits>` (lower-cased where AWS wants lower case), and the
provider's validator checks that name; so a logical name too long for AWS fails as well.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

#: Pulumi's marker of a secret value on the wire (sdk/python/lib/pulumi/runtime/rpc.py).
_SECRET_SIG = "4dabf18193072939515e22adb298388d"
#: Pulumi's marker of a value not known yet (preview).
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
#: terraform-plugin-sdk helper/id UniqueIDSuffixLength: what `name_prefix` leaves room for.
UNIQUE_ID_SUFFIX_LENGTH = 26
#: pulumi-aws auto-names: "<logical name>-" + 7 random hex digits (pulumi-terraform-bridge AutoName).
AUTONAME_SUFFIX = "-abcdef0"


@dataclass(frozen=True)
class Rule:
    """One AWS constraint on a string: length, accepted characters, and extra checks."""

    what: str
    source: str
    max_len: Optional[int] = None
    min_len: int = 0
    #: Whole-string pattern (re.fullmatch) and how to say it to a user.
    pattern: Optional[str] = None
    accepted: str = ""
    #: Extra checks: each returns a message, or None when the value passes.
    extra: tuple[Callable[[str], Optional[str]], ...] = ()

    def problems(self, value: str) -> list[str]:
        out = []
        if len(value) < self.min_len:
            out.append(f"is shorter than {self.min_len} characters")
        if self.max_len is not None and len(value) > self.max_len:
            out.append(f"is {len(value)} characters long; AWS accepts at most {self.max_len}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            bad = sorted({c for c in value if not re.fullmatch(self.pattern, c)}) if len(value) else []
            which = f" (refused: {' '.join(repr(c) for c in bad)})" if bad and len(bad) < 10 else ""
            out.append(f"may hold only {self.accepted}{which}")
        for check in self.extra:
            message = check(value)
            if message:
                out.append(message)
        return out


def _not_starting(*prefixes: str, case_insensitive: bool = False) -> Callable[[str], Optional[str]]:
    def check(value: str) -> Optional[str]:
        probe = value.lower() if case_insensitive else value
        for p in prefixes:
            if probe.startswith(p):
                return f"may not start with {p!r}"
        return None
    return check


def _no_double_or_trailing_hyphen(value: str) -> Optional[str]:
    if "--" in value:
        return "may not contain two consecutive hyphens"
    if value.endswith("-"):
        return "may not end with a hyphen"
    return None


def _first_letter(value: str) -> Optional[str]:
    return None if value[:1].isalpha() and value[:1].isascii() else "must start with a letter"


# --------------------------------------------------------------------------- EC2

_SG_CHARS = r"[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]*"
_SG_ACCEPTED = "letters, digits, spaces and ._-:/()#,@[]+=&;{}!$*"
_EC2_SG = ("EC2 API reference CreateSecurityGroup (GroupName, GroupDescription), IpRange/UserIdGroupPair "
           "Description; terraform-provider-aws internal/service/ec2/validate.go validSecurityGroupRuleDescription, "
           "vpc_security_group.go")
SECURITY_GROUP_NAME = Rule("security group name", _EC2_SG, max_len=255, min_len=1, pattern=_SG_CHARS,
                           accepted=_SG_ACCEPTED, extra=(_not_starting("sg-"),))
#: terraform-provider-aws vpc_security_group.go: name_prefix StringLenBetween(0, 100).
SECURITY_GROUP_NAME_PREFIX = Rule("security group name_prefix", _EC2_SG, max_len=100, pattern=_SG_CHARS,
                                  accepted=_SG_ACCEPTED, extra=(_not_starting("sg-"),))
SECURITY_GROUP_DESCRIPTION = Rule("security group description", _EC2_SG, max_len=255, min_len=1,
                                  pattern=_SG_CHARS, accepted=_SG_ACCEPTED)
SECURITY_GROUP_RULE_DESCRIPTION = Rule("security group rule description", _EC2_SG, max_len=255,
                                       pattern=_SG_CHARS, accepted=_SG_ACCEPTED)
#: terraform-provider-aws internal/service/elbv2 (load_balancer.go, target_group.go):
#: name_prefix "cannot be longer than 6 characters", alphanumerics and hyphens only, not
#: beginning with a hyphen (ELB names: Elastic Load Balancing API Reference, CreateLoadBalancer
#: Name, CreateTargetGroup Name: 32 characters, alphanumerics and hyphens).
ELB_NAME_PREFIX = Rule("load balancer or target group name_prefix",
                       "terraform-provider-aws elbv2 validName/validNamePrefix; ELB API CreateLoadBalancer Name",
                       max_len=6, min_len=1, pattern=r"[A-Za-z0-9-]+", accepted="letters, digits and '-'",
                       extra=(lambda v: "may not begin with '-'" if v.startswith("-") else None,))
#: EC2 User Guide, "Instance user data": limited to 16 KB in raw form, before base64.
USER_DATA_MAX_BYTES = 16 * 1024

# --------------------------------------------------------------------------- tags

_TAGS_SOURCE = ("EC2 User Guide 'Tag restrictions' (key 1-127, value 0-255 Unicode characters, no 'aws:' "
                "prefix, 50 tags); IAM API reference Tag (letters, digits, spaces and _.:/=+-@)")
_TAG_CHARS = r"[\w .:/=+\-@]*"
_TAG_ACCEPTED = "letters, digits, spaces and _.:/=+-@"
TAG_KEY = Rule("tag key", _TAGS_SOURCE, max_len=127, min_len=1, pattern=_TAG_CHARS, accepted=_TAG_ACCEPTED,
               extra=(_not_starting("aws:", case_insensitive=True),))
TAG_VALUE = Rule("tag value", _TAGS_SOURCE, max_len=255, pattern=_TAG_CHARS, accepted=_TAG_ACCEPTED)
MAX_TAGS = 50

# --------------------------------------------------------------------------- IAM

_IAM_CHARS = r"[A-Za-z0-9_+=,.@-]+"
_IAM_ACCEPTED = "letters, digits and _+=,.@-"
_IAM = ("IAM API reference CreateRole/PutRolePolicy/CreateInstanceProfile (pattern [\\w+=,.@-]+); "
        "terraform-provider-aws internal/service/iam/validate.go validResourceName, role.go roleNameMaxLen 64, "
        "role_policy.go rolePolicyNameMaxLen 128, instance_profile.go instanceProfileNameMaxLen 128")
IAM_ROLE_NAME = Rule("IAM role name", _IAM, max_len=64, min_len=1, pattern=_IAM_CHARS, accepted=_IAM_ACCEPTED)
IAM_ROLE_NAME_PREFIX = Rule("IAM role name_prefix", _IAM, max_len=64 - UNIQUE_ID_SUFFIX_LENGTH, min_len=1,
                            pattern=_IAM_CHARS, accepted=_IAM_ACCEPTED)
IAM_ROLE_POLICY_NAME = Rule("IAM role policy name", _IAM, max_len=128, min_len=1, pattern=_IAM_CHARS,
                            accepted=_IAM_ACCEPTED)
IAM_POLICY_NAME_PREFIX = Rule("IAM policy name_prefix", _IAM, max_len=128 - UNIQUE_ID_SUFFIX_LENGTH, min_len=1,
                              pattern=_IAM_CHARS, accepted=_IAM_ACCEPTED)
IAM_INSTANCE_PROFILE_NAME = Rule("IAM instance profile name", _IAM, max_len=128, min_len=1, pattern=_IAM_CHARS,
                                 accepted=_IAM_ACCEPTED)
#: IAM API reference CreateRole Description: up to 1000, [\u0009\u000A\u000D\u0020-\u007E\u00A1-\u00FF]*.
IAM_ROLE_DESCRIPTION = Rule("IAM role description", "IAM API reference CreateRole (Description)", max_len=1000,
                            pattern=r"[\t\n\r\u0020-\u007e\u00a1-\u00ff]*",
                            accepted="printable Latin-1 characters, tab and newline")

_IAM_QUOTAS = "IAM User Guide, IAM and AWS STS quotas (role trust policy 2,048; inline policies per role 10,240)"
#: type -> ((input, limit, what), ...): document sizes IAM refuses beyond.
IAM_DOCUMENT_LIMITS = {
    "aws:iam/role:Role": (("assumeRolePolicy", 2048, "trust policy"),),
    # One inline policy can be at most what all of a role's inline policies may total
    # (the total itself: check_role_inline_policies).
    "aws:iam/rolePolicy:RolePolicy": (("policy", 10240, "inline policy"),),
}
#: All inline policies of one role together (white space not counted): PutRolePolicy
#: answers LimitExceeded beyond it (_IAM_QUOTAS).
IAM_ROLE_INLINE_POLICIES_MAX = 10240

# --------------------------------------------------------------------------- RDS

_RDS = "terraform-provider-aws internal/service/rds/validate.go"
RDS_DB_IDENTIFIER = Rule(
    "RDS DB instance identifier",
    f"RDS API reference CreateDBInstance DBInstanceIdentifier (1-63 for MySQL); {_RDS} validIdentifier",
    max_len=63, min_len=1, pattern=r"[a-z0-9-]+", accepted="lower-case letters, digits and hyphens",
    extra=(_first_letter, _no_double_or_trailing_hyphen))
RDS_DB_IDENTIFIER_PREFIX = Rule(
    "RDS DB instance identifier_prefix", f"{_RDS} validIdentifierPrefix; instance.go (63 - 26)",
    max_len=63 - UNIQUE_ID_SUFFIX_LENGTH, min_len=1, pattern=r"[a-z0-9-]+",
    accepted="lower-case letters, digits and hyphens", extra=(_first_letter,))
RDS_FINAL_SNAPSHOT_IDENTIFIER = Rule(
    "RDS final snapshot identifier",
    "RDS API reference DeleteDBInstance FinalDBSnapshotIdentifier (1-255 letters, digits, hyphens; first a "
    "letter; no '--', no trailing '-'); terraform-provider-aws internal/service/rds/instance.go "
    "final_snapshot_identifier", max_len=255, min_len=1, pattern=r"[A-Za-z0-9-]+",
    accepted="letters, digits and hyphens", extra=(_first_letter, _no_double_or_trailing_hyphen))
RDS_PARAMETER_GROUP_NAME = Rule(
    "RDS DB parameter group name",
    f"RDS API reference CreateDBParameterGroup DBParameterGroupName; {_RDS} validParamGroupName",
    max_len=255, min_len=1, pattern=r"[0-9a-z.-]+", accepted="lower-case letters, digits, periods and hyphens",
    extra=(_first_letter, _no_double_or_trailing_hyphen))
RDS_SUBNET_GROUP_NAME = Rule(
    "RDS DB subnet group name",
    f"RDS API reference CreateDBSubnetGroup DBSubnetGroupName; {_RDS} validSubnetGroupName",
    max_len=255, min_len=1, pattern=r"[0-9a-z_ .-]+",
    accepted="lower-case letters, digits, spaces, periods, underscores and hyphens",
    extra=(lambda v: "may not be 'default'" if v.lower() == "default" else None,))
RDS_MASTER_USERNAME = Rule(
    "RDS MySQL master user name",
    "RDS API reference CreateDBInstance MasterUsername (MySQL: 1-16 letters or digits, first a letter)",
    max_len=16, min_len=1, pattern=r"[A-Za-z0-9]+", accepted="letters and digits", extra=(_first_letter,))

# --------------------------------------------------------------------------- Secrets Manager, SSM, logs

_SECRETS = ("Secrets Manager API reference CreateSecret Name (1-512, letters, digits and /_+=.@-); "
            "terraform-provider-aws internal/service/secretsmanager/validate.go validSecretName(Prefix)")
SECRET_NAME = Rule("Secrets Manager secret name", _SECRETS, max_len=512, min_len=1, pattern=r"[0-9A-Za-z/_+=.@-]+",
                   accepted="letters, digits and /_+=.@-")
SECRET_NAME_PREFIX = Rule("Secrets Manager secret name_prefix", _SECRETS, max_len=512 - UNIQUE_ID_SUFFIX_LENGTH,
                          min_len=1, pattern=r"[0-9A-Za-z/_+=.@-]+", accepted="letters, digits and /_+=.@-")
SECRET_DESCRIPTION = Rule("Secrets Manager secret description", "Secrets Manager API reference CreateSecret "
                          "Description (up to 2048 characters)", max_len=2048)

_SSM = ("Systems Manager API reference PutParameter Name (a-zA-Z0-9_.- and '/', no 'aws'/'ssm' prefix, at most "
        "15 levels; 1011 characters including the parameter's ARN)")
#: The ARN counts towards the 1011 (`arn:<partition>:ssm:<region>:<account>:parameter<name>`).
SSM_NAME_WITH_ARN_MAX = 1011
SSM_MAX_DEPTH = 15
SSM_PARAMETER_NAME = Rule(
    "SSM parameter name", _SSM, min_len=1, pattern=r"[a-zA-Z0-9_.\-/]+", accepted="letters, digits, _.- and '/'",
    extra=(lambda v: _not_starting("aws", "ssm", case_insensitive=True)(v.lstrip("/")),
           lambda v: (f"has {v.strip('/').count('/') + 1} levels; AWS accepts at most {SSM_MAX_DEPTH}"
                      if v.strip("/").count("/") + 1 > SSM_MAX_DEPTH else None),
           lambda v: "a hierarchical name must start with '/'" if "/" in v and not v.startswith("/") else None))
SSM_PARAMETER_DESCRIPTION = Rule("SSM parameter description", "Systems Manager API reference PutParameter "
                                 "Description (up to 1024 characters)", max_len=1024)

LOG_GROUP_NAME = Rule(
    "CloudWatch Logs log group name",
    "CloudWatch Logs API reference CreateLogGroup logGroupName (1-512, [.\\-_/#A-Za-z0-9]+)",
    max_len=512, min_len=1, pattern=r"[.\-_/#A-Za-z0-9]+", accepted="letters, digits and ._-/#")
#: CloudWatch Logs API reference PutRetentionPolicy retentionInDays (0: never expire).
LOG_RETENTION_DAYS = (0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)


# --------------------------------------------------------------------------- S3

_S3_BUCKET = ("S3 User Guide 'General purpose bucket naming rules' (3-63 characters; lower-case letters, digits, "
              "'.' and '-'; first and last a letter or digit; no '..'; not an IP address; reserved prefixes "
              "xn--, sthree-, amzn-s3-demo-; reserved suffixes -s3alias, --ol-s3, .mrap, --x-s3, --table-s3)")
S3_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def _s3_name_checks(value: str, *, whole: bool) -> Optional[str]:
    if value[:1] and not (value[0].isascii() and value[0].isalnum()):
        return "must start with a letter or digit"
    if ".." in value:
        return "may not contain two adjacent periods"
    if whole and re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", value):
        return "may not be formatted as an IP address"
    if whole and value[-1:] and not value[-1].isalnum():
        return "must end with a letter or digit"
    if whole:
        for suffix in S3_RESERVED_SUFFIXES:
            if value.endswith(suffix):
                return f"may not end with {suffix!r}"
    return None


S3_BUCKET_NAME = Rule(
    "S3 bucket name", _S3_BUCKET, max_len=63, min_len=3, pattern=r"[a-z0-9.-]*",
    accepted="lower-case letters, digits, '.' and '-'",
    extra=(_not_starting(*S3_RESERVED_PREFIXES), lambda v: _s3_name_checks(v, whole=True)))
#: terraform-provider-aws internal/service/s3/bucket.go bucket_prefix: StringLenBetween(0, 63 - 26); the
#: provider appends a 26-digit unique id, so the prefix must also start like a bucket name.
S3_BUCKET_NAME_PREFIX = Rule(
    "S3 bucket bucket_prefix", _S3_BUCKET + "; terraform-provider-aws internal/service/s3/bucket.go bucket_prefix "
    "(at most 63 - 26)", max_len=63 - UNIQUE_ID_SUFFIX_LENGTH, min_len=1, pattern=r"[a-z0-9.-]*",
    accepted="lower-case letters, digits, '.' and '-'",
    extra=(_not_starting(*S3_RESERVED_PREFIXES), lambda v: _s3_name_checks(v, whole=False)))


def _utf8_at_most(limit: int) -> Callable[[str], Optional[str]]:
    def check(value: str) -> Optional[str]:
        size = len(value.encode("utf-8"))
        return f"is {size} bytes in UTF-8; S3 accepts at most {limit}" if size > limit else None
    return check


#: S3 User Guide 'Naming Amazon S3 objects': a key is 1-1024 bytes of UTF-8. The same page lists
#: the characters that are safe everywhere (letters, digits, !-_.*'() and '/' as a delimiter); the
#: program's keys use only those, and a key starting with '/' or holding '//' or a '.'/'..' segment
#: is refused because the console, the CLI and URL normalisation treat it differently from S3.
S3_OBJECT_KEY = Rule(
    "S3 object key", "S3 User Guide 'Naming Amazon S3 objects' (UTF-8, at most 1,024 bytes; safe characters "
    "0-9a-zA-Z!-_.*'() and '/')", min_len=1, pattern=r"[0-9A-Za-z!_.*'()/-]+",
    accepted="the S3 safe characters: letters, digits, !-_.*'() and '/'",
    extra=(_utf8_at_most(1024),
           lambda v: ("may not start with '/', contain '//' or a '.' or '..' segment"
                      if v.startswith("/") or "//" in v or any(p in (".", "..") for p in v.split("/")) else None)))


# --------------------------------------------------------------------------- which input gets which rule

#: resource type -> ((input path, rule), ...). A path is property names joined by '.',
#: with '[]' after a list property (every element).
INPUT_RULES: dict[str, tuple[tuple[str, Rule], ...]] = {
    "aws:ec2/securityGroup:SecurityGroup": (
        ("name", SECURITY_GROUP_NAME), ("namePrefix", SECURITY_GROUP_NAME_PREFIX),
        ("description", SECURITY_GROUP_DESCRIPTION),
        ("ingress[].description", SECURITY_GROUP_RULE_DESCRIPTION),
        ("egress[].description", SECURITY_GROUP_RULE_DESCRIPTION)),
    "aws:ec2/securityGroupRule:SecurityGroupRule": (("description", SECURITY_GROUP_RULE_DESCRIPTION),),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": (("description", SECURITY_GROUP_RULE_DESCRIPTION),),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": (("description", SECURITY_GROUP_RULE_DESCRIPTION),),
    "aws:iam/role:Role": (("name", IAM_ROLE_NAME), ("namePrefix", IAM_ROLE_NAME_PREFIX),
                          ("description", IAM_ROLE_DESCRIPTION)),
    "aws:iam/rolePolicy:RolePolicy": (("name", IAM_ROLE_POLICY_NAME), ("namePrefix", IAM_POLICY_NAME_PREFIX)),
    "aws:iam/policy:Policy": (("name", IAM_ROLE_POLICY_NAME), ("namePrefix", IAM_POLICY_NAME_PREFIX)),
    "aws:iam/instanceProfile:InstanceProfile": (("name", IAM_INSTANCE_PROFILE_NAME),
                                                ("namePrefix", IAM_POLICY_NAME_PREFIX)),
    "aws:rds/instance:Instance": (("identifier", RDS_DB_IDENTIFIER), ("identifierPrefix", RDS_DB_IDENTIFIER_PREFIX),
                                  ("finalSnapshotIdentifier", RDS_FINAL_SNAPSHOT_IDENTIFIER),
                                  ("username", RDS_MASTER_USERNAME)),
    "aws:rds/parameterGroup:ParameterGroup": (("name", RDS_PARAMETER_GROUP_NAME),),
    "aws:rds/subnetGroup:SubnetGroup": (("name", RDS_SUBNET_GROUP_NAME),),
    "aws:secretsmanager/secret:Secret": (("name", SECRET_NAME), ("namePrefix", SECRET_NAME_PREFIX),
                                         ("description", SECRET_DESCRIPTION)),
    "aws:ssm/parameter:Parameter": (("name", SSM_PARAMETER_NAME), ("description", SSM_PARAMETER_DESCRIPTION)),
    "aws:cloudwatch/logGroup:LogGroup": (("name", LOG_GROUP_NAME),),
    "aws:lb/loadBalancer:LoadBalancer": (("namePrefix", ELB_NAME_PREFIX),),
    "aws:lb/targetGroup:TargetGroup": (("namePrefix", ELB_NAME_PREFIX),),
    "aws:s3/bucket:Bucket": (("bucket", S3_BUCKET_NAME), ("bucketPrefix", S3_BUCKET_NAME_PREFIX)),
    "aws:s3/bucketV2:BucketV2": (("bucket", S3_BUCKET_NAME), ("bucketPrefix", S3_BUCKET_NAME_PREFIX)),
    "aws:s3/bucketObjectv2:BucketObjectv2": (("key", S3_OBJECT_KEY),),
    "aws:s3/bucketObject:BucketObject": (("key", S3_OBJECT_KEY),),
}

#: Types pulumi-aws names itself when neither the name nor its prefix is given:
#: type -> (name property, prefix property, lower-cased?). The RDS names are lower-cased
#: by pulumi-aws (AWS stores them so).
AUTONAMED: dict[str, tuple[str, str, bool]] = {
    "aws:ec2/securityGroup:SecurityGroup": ("name", "namePrefix", False),
    "aws:iam/role:Role": ("name", "namePrefix", False),
    "aws:iam/rolePolicy:RolePolicy": ("name", "namePrefix", False),
    "aws:iam/policy:Policy": ("name", "namePrefix", False),
    "aws:iam/instanceProfile:InstanceProfile": ("name", "namePrefix", False),
    "aws:rds/instance:Instance": ("identifier", "identifierPrefix", True),
    "aws:rds/parameterGroup:ParameterGroup": ("name", "namePrefix", True),
    "aws:rds/subnetGroup:SubnetGroup": ("name", "namePrefix", True),
    # pulumi-aws lower-cases the S3 bucket names it generates (bucket names are lower case).
    "aws:s3/bucket:Bucket": ("bucket", "bucketPrefix", True),
}


def autoname(resource_type: str, logical_name: str) -> Optional[str]:
    """The name pulumi-aws gives a resource of `resource_type` left unnamed (None: not auto-named)."""
    entry = AUTONAMED.get(resource_type)
    if entry is None:
        return None
    name = logical_name + AUTONAME_SUFFIX
    return name.lower() if entry[2] else name


@dataclass(frozen=True)
class Violation:
    """One input AWS would refuse: which resource, which input, its value and why (with the source)."""

    resource_type: str
    resource_name: str
    input: str
    value: Any
    message: str
    source: str

    def __str__(self) -> str:
        shown = self.value if not isinstance(self.value, str) or len(self.value) <= 120 else self.value[:117] + "..."
        return (f"{self.resource_type} {self.resource_name!r}: input {self.input} = {shown!r} {self.message} "
                f"[{self.source}]")


class AwsInputError(ValueError):
    """Every input of a run that AWS would refuse, reported together."""

    def __init__(self, violations: Sequence[Violation]):
        self.violations = tuple(violations)
        lines = "\n".join(f"  - {v}" for v in self.violations)
        super().__init__(f"{len(self.violations)} input(s) AWS would refuse:\n{lines}")


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict) and _SECRET_SIG in value:
        return value.get("value")
    return value


def _values_at(inputs: Mapping[str, Any], path: str) -> Iterable[tuple[str, Any]]:
    """(concrete path, value) of every value at `path` ('a[].b' walks each element of list a)."""
    items: list[tuple[str, Any]] = [("", inputs)]
    for part in path.split("."):
        is_list = part.endswith("[]")
        key = part[:-2] if is_list else part
        nxt = []
        for where, value in items:
            value = _unwrap(value)
            if not isinstance(value, Mapping) or key not in value:
                continue
            child = _unwrap(value[key])
            label = f"{where}.{key}" if where else key
            if is_list:
                nxt.extend((f"{label}[{i}]", v) for i, v in enumerate(child or []))
            else:
                nxt.append((label, child))
        items = nxt
    return [(w, _unwrap(v)) for w, v in items]


def check_role_inline_policies(policies: Iterable[tuple[str, Any, Any]]) -> list[Violation]:
    """Roles whose inline policies together exceed IAM_ROLE_INLINE_POLICIES_MAX.
    `policies`: (RolePolicy resource name, its `role` input, its `policy` input) of
    every inline policy the program declares; values not known yet are skipped."""
    totals: dict[str, list[tuple[str, int]]] = {}
    for name, role, document in policies:
        role, document = _unwrap(role), _unwrap(document)
        if isinstance(role, str) and role != _UNKNOWN and isinstance(document, str) and document != _UNKNOWN:
            totals.setdefault(role, []).append((name, len(re.sub(r"\s", "", document))))
    found = []
    for role, sizes in sorted(totals.items()):
        total = sum(size for _, size in sizes)
        if total > IAM_ROLE_INLINE_POLICIES_MAX:
            parts = ", ".join(f"{name} {size}" for name, size in sizes)
            found.append(Violation(
                "aws:iam/rolePolicy:RolePolicy", sizes[-1][0], "policy", f"<{total} characters>",
                f"makes the inline policies of role {role} {total} characters together ({parts}; white space "
                f"not counted); IAM accepts at most {IAM_ROLE_INLINE_POLICIES_MAX} per role", _IAM_QUOTAS))
    return found


#: Private IPv4 addresses one network interface may hold, the primary included, by instance
#: type (EC2 User Guide, "Maximum IP addresses per network interface"): the router's needs
#: three (its own, the console address, the tenants' address). Types not listed are not
#: checked offline; EC2 refuses too many with PrivateIpAddressLimitExceeded.
IPV4_ADDRESSES_PER_INTERFACE = {
    "t3.nano": 2, "t3.micro": 2, "t3.small": 4, "t3.medium": 6, "t3.large": 12, "t2.medium": 6,
    "c4.large": 10, "m4.large": 10,
    "c5.large": 10, "c5.xlarge": 15, "c5n.large": 10, "c5n.xlarge": 15, "c6i.large": 10, "c6i.xlarge": 15,
    "c6in.large": 10, "c6in.xlarge": 15, "m5.large": 10, "m5.xlarge": 15, "m6i.large": 10, "m6i.xlarge": 15,
    "m6i.2xlarge": 15, "m7i.large": 10, "m7i.xlarge": 15, "m6g.large": 10,
}


def interface_address_problem(instance_type: str, addresses: int) -> Optional[str]:
    """Why an instance of `instance_type` cannot hold `addresses` private IPv4 addresses on
    one network interface, or None (fits, or a type not in IPV4_ADDRESSES_PER_INTERFACE)."""
    limit = IPV4_ADDRESSES_PER_INTERFACE.get(instance_type)
    if limit is None or addresses <= limit:
        return None
    return (f"PrivateIpAddressLimitExceeded: instance type {instance_type} holds at most {limit} private IPv4 "
            f"addresses per network interface; this one has {addresses} (EC2 User Guide, \"Maximum IP addresses "
            f"per network interface\")")


#: Instance arguments that primaryNetworkInterface excludes (see check_inputs).
INSTANCE_LEVEL_NETWORK_INPUTS = ("subnetId", "vpcSecurityGroupIds", "securityGroups", "sourceDestCheck",
                                 "associatePublicIpAddress", "privateIp", "secondaryPrivateIps", "ipv6Addresses",
                                 "ipv6AddressCount", "enablePrimaryIpv6", "networkInterfaces")


class _Found:
    """The violations found in one resource's inputs, and where its ARN would be
    (`partition`, `region`, `account`: an SSM parameter name's length counts its ARN)."""

    def __init__(self, resource_type: str, resource_name: str, partition: str, region: str, account: str):
        self.resource_type, self.resource_name = resource_type, resource_name
        self.partition, self.region, self.account = partition, region, account
        self.violations: list[Violation] = []

    def add(self, path: str, value: Any, message: str, source: str) -> None:
        self.violations.append(Violation(self.resource_type, self.resource_name, path, value, message, source))

    def apply(self, path: str, value: Any, rule: Rule) -> None:
        """The rule's problems of a string value (values not known yet are skipped)."""
        if not isinstance(value, str) or value == _UNKNOWN:
            return
        for message in rule.problems(value):
            self.add(path, value, f"({rule.what}) {message}", rule.source)


def check_inputs(resource_type: str, resource_name: str, inputs: Mapping[str, Any], *,
                 partition: str = "aws", region: str = "us-east-1",
                 account: str = "123456789012") -> list[Violation]:
    """Every violation of AWS's rules in one resource's inputs (camelCase, as registered).

    `partition`, `region` and `account` make the ARN that counts towards an SSM
    parameter name's length. Values not known yet (preview) are skipped.
    """
    found = _Found(resource_type, resource_name, partition, region, account)
    _check_string_rules(found, inputs)
    of_type = _TYPE_CHECKS.get(resource_type)
    if of_type is not None:
        of_type(found, inputs)
    _check_iam_documents(found, inputs)
    if resource_type.startswith("aws:"):
        _check_tags(found, inputs)
    return found.violations


def _check_string_rules(found: _Found, inputs: Mapping[str, Any]) -> None:
    """INPUT_RULES of the resource type, and the name pulumi-aws generates when none is given."""
    rules = INPUT_RULES.get(found.resource_type, ())
    for path, rule in rules:
        for where, value in _values_at(inputs, path):
            found.apply(where, value, rule)
    entry = AUTONAMED.get(found.resource_type)
    if entry is not None and not inputs.get(entry[0]) and not inputs.get(entry[1]):
        generated = autoname(found.resource_type, found.resource_name)
        rule = dict(rules)[entry[0]]
        for message in rule.problems(generated):
            found.add(f"{entry[0]} (auto-named from the resource name)", generated, f"({rule.what}) {message}",
                      rule.source + "; pulumi-aws auto-naming: <name>-<7 hex digits>")


def _check_ssm_parameter(found: _Found, inputs: Mapping[str, Any]) -> None:
    name = _unwrap(inputs.get("name"))
    if isinstance(name, str) and name != _UNKNOWN:
        arn = (f"arn:{found.partition}:ssm:{found.region}:{found.account}:"
               f"parameter{name if name.startswith('/') else '/' + name}")
        if len(arn) > SSM_NAME_WITH_ARN_MAX:
            found.add("name", name, f"with its ARN is {len(arn)} characters; AWS accepts at most "
                      f"{SSM_NAME_WITH_ARN_MAX}", _SSM)


def _check_instance(found: _Found, inputs: Mapping[str, Any]) -> None:
    encoded = _unwrap(inputs.get("userDataBase64"))
    if isinstance(encoded, str) and encoded != _UNKNOWN:
        try:
            size = len(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            found.add("userDataBase64", encoded[:40], "is not valid base64", "EC2 API reference RunInstances UserData")
        else:
            if size > USER_DATA_MAX_BYTES:
                found.add("userDataBase64", f"<{size} bytes>", f"is {size} bytes of user data; EC2 accepts at most "
                          f"{USER_DATA_MAX_BYTES} before base64", "EC2 User Guide, instance user data (16 KB)")
    if _unwrap(inputs.get("primaryNetworkInterface")):
        # The interface brings its subnet, groups and addresses: EC2 refuses them beside it
        # (RunInstances, InvalidParameterCombination: "Network interfaces and an
        # instance-level subnet ID/security groups may not be specified on the same
        # request"; terraform-provider-aws v6 aws_instance schema: primary_network_interface
        # ConflictsWith these arguments, the deprecated network_interface blocks included).
        for prop in INSTANCE_LEVEL_NETWORK_INPUTS:
            if _unwrap(inputs.get(prop)) not in (None, [], ""):
                found.add(prop, _unwrap(inputs.get(prop)), "may not be set with primaryNetworkInterface (the "
                          "network interface's own setting applies)", "EC2 API reference RunInstances NetworkInterfaces")


def _check_eip(found: _Found, inputs: Mapping[str, Any]) -> None:
    if _unwrap(inputs.get("instance")) and _unwrap(inputs.get("networkInterface")):
        # AWS does not refuse it: pulumi-aws's Eip notes that with both set it returns no
        # error and the result is undefined. A guard of our own, so that the association is
        # never left to chance.
        found.add("networkInterface", _unwrap(inputs.get("networkInterface")), "is set with instance: AWS does not "
                  "refuse it, but which one the address ends up on is undefined; give one of the two",
                  "pulumi-aws Eip (instance and network_interface: undefined); EC2 API reference AssociateAddress")


def _check_rds_instance(found: _Found, inputs: Mapping[str, Any]) -> None:
    if _unwrap(inputs.get("multiAz")) is True and _unwrap(inputs.get("availabilityZone")):
        found.add("availabilityZone", _unwrap(inputs.get("availabilityZone")),
                  "may not be set with multiAz (RDS: 'Requesting a specific availability zone is not valid for "
                  "Multi-AZ instances')", "RDS API reference CreateDBInstance AvailabilityZone")


def _check_log_group(found: _Found, inputs: Mapping[str, Any]) -> None:
    days = _unwrap(inputs.get("retentionInDays"))
    if days is not None and days != _UNKNOWN and int(days) not in LOG_RETENTION_DAYS:
        found.add("retentionInDays", days, f"must be one of {', '.join(map(str, LOG_RETENTION_DAYS))}",
                  "CloudWatch Logs API reference PutRetentionPolicy retentionInDays")


#: An alarm action on the instance its metric names (CloudWatch API reference PutMetricAlarm
#: AlarmActions: arn:<partition>:automate:<region>:ec2:stop | terminate | reboot | recover).
_EC2_ALARM_ACTION = re.compile(r"^arn:([a-z-]+):automate:([a-z0-9-]+):ec2:(stop|terminate|reboot|recover)$")
#: PutMetricAlarm AlarmActions, OKActions: "Maximum number of 5 items".
ALARM_ACTIONS_MAX = 5


def _check_metric_alarm(found: _Found, inputs: Mapping[str, Any]) -> None:
    """An EC2 action acts on the instance of the alarm's metric: only an alarm on an AWS/EC2
    metric with an InstanceId dimension, in the alarm's own region, may have one, and the
    recover action on any such metric but StatusCheckFailed_Instance (CloudWatch User Guide,
    "Create alarms to stop, terminate, reboot, or recover an EC2 instance"; PutMetricAlarm
    refuses the action otherwise)."""
    for key in ("alarmActions", "okActions", "insufficientDataActions"):
        actions = [_unwrap(a) for a in (_unwrap(inputs.get(key)) or [])]
        if len(actions) > ALARM_ACTIONS_MAX:
            found.add(key, actions, f"has {len(actions)} actions; CloudWatch accepts at most {ALARM_ACTIONS_MAX}",
                      "CloudWatch API reference PutMetricAlarm")
        for action in actions:
            match = _EC2_ALARM_ACTION.match(action) if isinstance(action, str) else None
            if match is None:
                continue
            dimensions = _unwrap(inputs.get("dimensions")) or {}
            if _unwrap(inputs.get("namespace")) != "AWS/EC2" or "InstanceId" not in dimensions:
                found.add(key, action, "is an EC2 action, valid only on an AWS/EC2 metric with an InstanceId "
                          "dimension", "CloudWatch User Guide, alarms that stop, terminate, reboot or recover an instance")
            if match.group(2) != found.region:
                found.add(key, action, f"names the region {match.group(2)}; the alarm is in {found.region}",
                          "CloudWatch API reference PutMetricAlarm AlarmActions")
            if match.group(3) == "recover" and _unwrap(inputs.get("metricName")) == "StatusCheckFailed_Instance":
                found.add(key, action, "is the recover action, which CloudWatch refuses on StatusCheckFailed_Instance "
                          "(reboot fits the instance check, recover the system check)",
                          "CloudWatch User Guide, alarms that stop, terminate, reboot or recover an instance")


#: The checks of one resource type beyond its string rules, tags and IAM documents.
_TYPE_CHECKS: dict[str, Callable[[_Found, Mapping[str, Any]], None]] = {
    "aws:ssm/parameter:Parameter": _check_ssm_parameter,
    "aws:ec2/instance:Instance": _check_instance,
    "aws:ec2/eip:Eip": _check_eip,
    "aws:rds/instance:Instance": _check_rds_instance,
    "aws:cloudwatch/logGroup:LogGroup": _check_log_group,
    "aws:cloudwatch/metricAlarm:MetricAlarm": _check_metric_alarm,
}


def _check_iam_documents(found: _Found, inputs: Mapping[str, Any]) -> None:
    """The sizes of the IAM documents of the types in IAM_DOCUMENT_LIMITS."""
    for prop, limit, what in IAM_DOCUMENT_LIMITS.get(found.resource_type, ()):
        document = _unwrap(inputs.get(prop))
        if isinstance(document, str) and document != _UNKNOWN:
            size = len(re.sub(r"\s", "", document))  # IAM does not count white space
            if size > limit:
                found.add(prop, f"<{size} characters>", f"is a {what} of {size} characters (white space not "
                          f"counted); IAM accepts at most {limit}", _IAM_QUOTAS)


def _check_tags(found: _Found, inputs: Mapping[str, Any]) -> None:
    """Tags of any AWS resource (and an instance's volume tags)."""
    for prop in ("tags", "volumeTags"):
        tags = _unwrap(inputs.get(prop))
        if not isinstance(tags, Mapping):
            continue
        if len(tags) > MAX_TAGS:
            found.add(prop, f"<{len(tags)} tags>", f"has {len(tags)} tags; AWS accepts at most {MAX_TAGS}", _TAGS_SOURCE)
        for key, value in tags.items():
            found.apply(f"{prop} key {key!r}", key, TAG_KEY)
            found.apply(f"{prop}.{key}", _unwrap(value), TAG_VALUE)
