"""A ready cloudmonkey (`cmk`) profile for the cloud's humans, as a stack output.

Pure module. The profile signs in as the CloudStack admin with the password of the admin
secret (naming.SECRET_ADMIN, {"username", "password"}); the api-keys secret is the
registration's alone. No secret reaches a command line (where `ps` shows it to every
user of the machine): `cmk set password ...` would put it there, so the setup command
writes the profile into a config file of its own instead, from a here-document whose
values come from `aws secretsmanager get-secret-value` and jq's output, under umask 077.
cmk reads it with `cmk -c FILE` (apache/cloudstack-cloudmonkey: cmk.go's -c flag;
config/config.go: the unnamed DEFAULT section holds `profile` and the other core keys,
the section named after the profile holds url, username, password, domain, apikey and
secretkey; with no API key, cmd/network.go logs in with username/password/domain).
A file left from an earlier setup is removed first: `>` would keep its mode. cmk saves
the file back in place (gopkg.in/ini SaveTo), so its mode stays 0600.
"""

from __future__ import annotations

import shlex


def profile_name(stack: str) -> str:
    return f"cloudstack-ec2-{stack}"


def config_path(stack: str) -> str:
    """The profile's own cmk config file, under cmk's directory (~/.cmk, mode 0700)."""
    return f"$HOME/.cmk/{profile_name(stack)}.config"


def cmk_profile(stack: str, api_url: str, admin_secret_arn: str, region: str) -> dict[str, str]:
    """{"profile", "url", "config", "cmk", "setup"}: `setup` is one shell command (needs
    the AWS CLI, jq and cmk) that writes `config`; `cmk` is the command line to run
    cloudmonkey with it (`<cmk> list zones`)."""
    name, path = profile_name(stack), config_path(stack)
    fetch = (f"aws secretsmanager get-secret-value --region {shlex.quote(region)} "
             f"--secret-id {shlex.quote(admin_secret_arn)} --query SecretString --output text")
    cmk = f'cmk -c "{path}"'
    setup = (f"admin=$({fetch}) && (umask 077 && mkdir -p \"$HOME/.cmk\" && rm -f \"{path}\" && cat >\"{path}\" <<CSEC2_CMK_PROFILE\n"
             f"prompt = {name}\nasyncblock = true\ntimeout = 1800\noutput = json\nverifycert = true\n"
             f"profile = {name}\nautocomplete = true\n\n[{name}]\nurl = {api_url}\n"
             "username = $(jq -r .username <<<\"$admin\")\npassword = $(jq -r .password <<<\"$admin\")\n"
             "domain = /\napikey =\nsecretkey =\nCSEC2_CMK_PROFILE\n"
             f") && unset admin && {cmk} sync")
    return {"profile": name, "url": api_url, "config": path, "cmk": cmk, "setup": setup}
