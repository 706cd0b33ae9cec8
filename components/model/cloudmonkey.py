"""A ready cloudmonkey (`cmk`) profile for the cloud, as a stack output.

Pure module. cloudmonkey keeps profiles in ~/.cmk/config; `cmk set profile NAME` creates
or switches to one and saves it as the current profile, `cmk set url|apikey|secretkey`
fill the current profile, `cmk sync` fetches the API list (apache/cloudstack-cloudmonkey:
cmd/set.go, config/config.go UpdateConfig, cmd/sync.go). The API keys never appear in
the output: the setup command reads them from Secrets Manager on the admin's own machine
(the api-keys secret the management server writes: {"apikey": ..., "secretkey": ...}).
"""

from __future__ import annotations

import shlex


def profile_name(stack: str) -> str:
    return f"cloudstack-ec2-{stack}"


def cmk_profile(stack: str, api_url: str, api_keys_secret_arn: str, region: str) -> dict[str, str]:
    """{"profile", "url", "setup"}: `setup` is one shell command (needs the AWS CLI, jq and cmk)."""
    name = profile_name(stack)
    fetch = (f"aws secretsmanager get-secret-value --region {shlex.quote(region)} "
             f"--secret-id {shlex.quote(api_keys_secret_arn)} --query SecretString --output text")
    setup = (f"keys=$({fetch}) && cmk set profile {shlex.quote(name)} && cmk set url {shlex.quote(api_url)} && "
             "cmk set apikey \"$(jq -r .apikey <<<\"$keys\")\" && cmk set secretkey \"$(jq -r .secretkey <<<\"$keys\")\" "
             "&& cmk sync")
    return {"profile": name, "url": api_url, "setup": setup}
