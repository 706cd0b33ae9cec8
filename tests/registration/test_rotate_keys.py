"""The registration's own CloudStack account and `cloudstack-ec2 rotate-keys`, against the
API emulator (roles enforced as DynamicRoleBasedAPIAccessChecker does) and moto's Secrets
Manager: a cloud whose secret holds the root admin's keys moves to the account's keys; a
second rotation replaces those; the registration and `status` work with them; a role
without a rule for a command is refused it."""

from __future__ import annotations

import io
import json

import boto3
import pytest

from components.cli import rotate_keys
from components.cli.commands import build_parser
from components.model import registration_account as ra
from components.registration.client import Api, AuthError, CloudStackError
from registration_engine import Engine
from registration_specs import FAST, REGION, make_spec


def rotate(emulator, secret) -> tuple[int, str, str]:
    args = build_parser().parse_args(["rotate-keys", "--stack", "dev"])
    out, err = io.StringIO(), io.StringIO()
    code = rotate_keys.rotate_command(args, out, err, connection=lambda a: (emulator.url, secret, REGION))
    return code, out.getvalue(), err.getvalue()


def secret_keys(secret) -> dict:
    return json.loads(boto3.client("secretsmanager", region_name=REGION).get_secret_value(
        SecretId=secret)["SecretString"])


def registration_user(emulator) -> dict:
    [account] = [a for a in emulator.accounts.values() if a["name"] == ra.ACCOUNT_NAME]
    [user] = [u for u in emulator.account_users.values() if u["accountid"] == account["id"]]
    return user


def test_rotation_moves_an_admin_keyed_secret_to_the_registrations_account(emulator, api_secret):
    admin = secret_keys(api_secret)
    code, out, err = rotate(emulator, api_secret)
    assert code == 0, err
    keys = secret_keys(api_secret)
    assert keys != admin
    # The new pair is the registration account's, with a role of exactly its rules.
    assert emulator.key_owner[keys["apikey"]] == registration_user(emulator)["id"]
    [role] = [r for r in emulator.roles.values() if r["name"] == ra.ROLE_NAME]
    assert role["type"] == "Admin"
    assert [r["rule"] for r in emulator.role_rules if r["roleid"] == role["id"]] == list(ra.ROLE_RULES)
    # The previous value stays readable as AWSPREVIOUS.
    previous = boto3.client("secretsmanager", region_name=REGION).get_secret_value(
        SecretId=api_secret, VersionStage="AWSPREVIOUS")
    assert json.loads(previous["SecretString"]) == admin
    # Nothing secret is printed.
    assert keys["apikey"] not in out + err and keys["secretkey"] not in out + err
    assert admin["secretkey"] not in out + err


def test_a_second_rotation_replaces_the_pair_and_the_old_one_stops_working(emulator, api_secret):
    assert rotate(emulator, api_secret)[0] == 0
    first = secret_keys(api_secret)
    code, _, err = rotate(emulator, api_secret)  # with the registration account's own keys now
    assert code == 0, err
    second = secret_keys(api_secret)
    assert second != first
    with pytest.raises(AuthError):
        Api(emulator.url, first["apikey"], first["secretkey"], FAST).call("listZones")
    assert Api(emulator.url, second["apikey"], second["secretkey"], FAST).call("listZones") == {}
    # One role, one account: the rotation creates neither twice.
    assert [r["name"] for r in emulator.roles.values()].count(ra.ROLE_NAME) == 1
    assert [a["name"] for a in emulator.accounts.values()].count(ra.ACCOUNT_NAME) == 1


def test_the_registration_and_status_work_with_the_registrations_keys(emulator, api_secret):
    assert rotate(emulator, api_secret)[0] == 0
    Engine(emulator.url, api_secret, REGION).up(make_spec(2, timeouts=FAST))
    assert len(emulator.hosts) == 2
    from components.cli import status
    args = build_parser().parse_args(["status", "--stack", "dev"])
    out, err = io.StringIO(), io.StringIO()
    assert status.status_command(args, out, err, connection=lambda a: (emulator.url, api_secret, REGION)) == 0, \
        err.getvalue()
    # Every call after the rotation was the registration account's, and none was refused.
    assert not [r for r in emulator.requests if r["status"] == 432]


def test_a_role_without_a_rule_for_a_command_is_refused_it(emulator, api_secret):
    admin = Api(emulator.url, emulator.apikey, emulator.secretkey, FAST)
    role = admin.call("importRole", name="narrow", type="Admin", rules=[
        {"rule": "listZones", "permission": "allow"}, {"rule": "list*", "permission": "deny"}])["role"]
    user = admin.call("createAccount", username="narrow", password="Pw-1-narrow", roleid=role["id"],
                      email="n@example.invalid", firstname="n", lastname="n")["account"]["user"][0]
    keys = admin.call("registerUserKeys", id=user["id"])["userkeys"]
    narrow = Api(emulator.url, keys["apikey"], keys["secretkey"], FAST)
    assert narrow.call("listZones") == {}
    for command in ("listHosts", "addCluster"):  # denied by a rule; matched by none
        with pytest.raises(CloudStackError) as refused:
            narrow.call(command)
        # ApiServer: UnavailableCommandException -> UNSUPPORTED_ACTION_ERROR
        assert refused.value.code == 432
        assert refused.value.text == f"The API [{command}] does not exist or is not available for the account narrow."


def test_rotation_with_keys_the_server_refuses_leaves_the_secret_alone(emulator, api_secret):
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=api_secret, SecretString=json.dumps({"apikey": "not-a-key", "secretkey": "nope"}))
    code, _, err = rotate(emulator, api_secret)
    assert code == 1 and "rejected the request" in err
    assert secret_keys(api_secret) == {"apikey": "not-a-key", "secretkey": "nope"}
    assert not [a for a in emulator.accounts.values() if a["name"] == ra.ACCOUNT_NAME]


def test_import_role_refuses_a_name_in_use_and_a_rule_naming_no_api(emulator, api_secret):
    admin = Api(emulator.url, emulator.apikey, emulator.secretkey, FAST)
    admin.call("importRole", name="once", type="Admin", rules=[{"rule": "listZones", "permission": "allow"}])
    with pytest.raises(CloudStackError, match="Role already exists"):
        admin.call("importRole", name="once", type="Admin", rules=[{"rule": "listZones", "permission": "allow"}])
    with pytest.raises(CloudStackError, match="Invalid api name: listZone provided in rules param"):
        admin.call("importRole", name="typo", type="Admin", rules=[{"rule": "listZone", "permission": "allow"}])
    assert [r["name"] for r in emulator.roles.values()].count("once") == 1


def test_rules_match_as_cloudstacks_rule_does(emulator, api_secret):
    # apache/cloudstack api/.../acl/Rule.matches lowercases the rule and the command.
    admin = Api(emulator.url, emulator.apikey, emulator.secretkey, FAST)
    role = admin.call("importRole", name="cased", type="Admin", rules=[
        {"rule": "LISTZONES*", "permission": "allow"}])["role"]
    user = admin.call("createAccount", username="cased", password="Pw-1-cased", roleid=role["id"],
                      email="c@example.invalid", firstname="c", lastname="c")["account"]["user"][0]
    keys = admin.call("registerUserKeys", id=user["id"])["userkeys"]
    cased = Api(emulator.url, keys["apikey"], keys["secretkey"], FAST)
    assert cased.call("listZones") == {}
    assert [r["rule"] for r in emulator.role_rules if r["roleid"] == role["id"]] == ["LISTZONES*"]
    with pytest.raises(CloudStackError) as refused:
        cased.call("addCluster")
    assert refused.value.code == 432
