"""Settings of the AWS provider's namespace (`aws:`) that this program depends on: every key
must be one the provider reads, and aws:region a region this program can deploy to.

Pure module (no Pulumi import). The provider itself reads these keys; a misspelt one
(`aws:regoin`) is passed on by Pulumi and silently ignored, so the stack would deploy to
the default region.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping

from components.model import regions
from components.model.settings.base import Problem
from components.model.suggest import nearest

AWS_NAMESPACE = "aws"
#: The configuration keys of pulumi-aws 7, the provider this project pins (its generated
#: SDK's sdk/python/pulumi_aws/config/vars.py: one property per `aws:` key).
AWS_PROVIDER_KEYS = (
    "accessKey", "allowedAccountIds", "assumeRoleWithWebIdentity", "assumeRoles", "customCaBundle",
    "defaultTags", "ec2MetadataServiceEndpoint", "ec2MetadataServiceEndpointMode", "endpoints",
    "forbiddenAccountIds", "httpProxy", "httpsProxy", "ignoreTags", "insecure", "maxRetries", "noProxy",
    "profile", "region", "retryMode", "s3UsEast1RegionalEndpoint", "s3UsePathStyle", "secretKey",
    "sharedConfigFiles", "sharedCredentialsFiles", "skipCredentialsValidation", "skipMetadataApiCheck",
    "skipRegionValidation", "skipRequestingAccountId", "stsRegion", "tagPolicyCompliance", "token",
    "tokenBucketRateLimiterCapacity", "useDualstackEndpoint", "useFipsEndpoint", "userAgents",
)
#: The provider's credentials (pulumi-aws's configuration reference: accessKey, secretKey and
#: the session token): never shown.
AWS_SECRET_KEYS = ("accessKey", "secretKey", "token")
#: pulumi-aws 6's single role, which version 7 no longer reads: refused with its own
#: explanation (components/registration/client.py identity_problems), not as unknown.
RETIRED_AWS_KEYS = ("assumeRole",)


def aws_problems(values: Mapping[str, Any], secrets: Collection[str] = ()) -> list[Problem]:
    """Problems of the stack's `aws:` keys. `values`: {"aws:<key>": value} (other namespaces
    are ignored); `secrets`: the keys whose values are secret (shown as "(secret)", and a
    secret aws:region is left to the provider). Unknown keys first, sorted, each with the
    nearest provider key; then aws:region's name (regions.region_problem). An empty
    aws:region is unset."""
    prefix = f"{AWS_NAMESPACE}:"
    names = {key[len(prefix):]: "(secret)" if key in secrets else value
             for key, value in values.items() if key.startswith(prefix)}
    problems = []
    for name in sorted(set(names) - set(AWS_PROVIDER_KEYS) - set(RETIRED_AWS_KEYS)):
        close = nearest(name, AWS_PROVIDER_KEYS)
        hint = (f"did you mean {prefix}{close}?" if close
                else "not a setting of the AWS provider pulumi-aws 7, which ignores it")
        problems.append(Problem(prefix + name, names[name], f"unknown key ({hint})"))
    region = None if f"{prefix}region" in secrets else names.get("region")
    if isinstance(region, str) and region != "":
        message = regions.region_problem(region)
        if message:
            problems.append(Problem(f"{prefix}region", region, message))
    elif region not in (None, ""):
        problems.append(Problem(f"{prefix}region", region, "expected a region name such as us-east-1"))
    return problems
