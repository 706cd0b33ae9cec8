"""The registration's own CloudStack account and `cloudstack-ec2 rotate-keys`, against the
API emulator (roles enforced as DynamicRoleBasedAPIAccessChecker does, the Admin-type
fallback included) and moto's Secrets Manager: the rotation signs in as the admin with the
admin secret's password; a cloud whose secret holds the root admin's keys moves to the
account's keys; a second rotation replaces those; the registration and `status` work with
them and nothing else does; an older role is brought to the rules with the deny last."""

from __future__ import annotations

import io
import json

import boto3
import pytest

from components.cli import rotate_keys
from components.cli.commands import build_parser
from components.model import registration_account as ra
from components.registration.client import Api, AuthError, CloudStackError
from emulator.server import Emulator
from registration_engine import Engine
from registration_specs import FAST, REGION, make_spec


ADMIN_SECRET = "cloudstack-ec2/dev/admin"
ADMIN_PASSWORD = "Adm1n-pass-of-the-secret"


@pytest.fixture
def emulator():
    emu = Emulator(admin_password=ADMIN_PASSWORD).start()
    yield emu
    emu.stop()


@pytest.fixture
def admin_secret(aws):
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=ADMIN_SECRET, SecretString=json.dumps({"username": "admin", "password": ADMIN_PASSWORD}))
    return ADMIN_SECRET


def rotate(emulator, secret) -> tuple[int, str, str]:
    args = build_parser().parse_args(["rotate-keys", "--stack", "dev"])
    out, err = io.StringIO(), io.StringIO()
    code = rotate_keys.rotate_command(args, out, err,
                                      connection=lambda a: (emulator.url, secret, ADMIN_SECRET, REGION))
    return code, out.getvalue(), err.getvalue()


def role_rules(emulator) -> list[tuple[str, str]]:
    [role] = [r for r in emulator.roles.values() if r["name"] == ra.ROLE_NAME]
    return [(r["rule"], r["permission"]) for r in emulator.role_rules if r["roleid"] == role["id"]]


def secret_keys(secret) -> dict:
    return json.loads(boto3.client("secretsmanager", region_name=REGION).get_secret_value(
        SecretId=secret)["SecretString"])


def registration_user(emulator) -> dict:
    [account] = [a for a in emulator.accounts.values() if a["name"] == ra.ACCOUNT_NAME]
    [user] = [u for u in emulator.account_users.values() if u["accountid"] == account["id"]]
    return user


def test_rotation_moves_an_admin_keyed_secret_to_the_registrations_account(emulator, api_secret, admin_secret):
    admin = secret_keys(api_secret)
    code, out, err = rotate(emulator, api_secret)
    assert code == 0, err
    keys = secret_keys(api_secret)
    assert keys != admin
    # The new pair is the registration account's, with a role of exactly its rules.
    assert emulator.key_owner[keys["apikey"]] == registration_user(emulator)["id"]
    [role] = [r for r in emulator.roles.values() if r["name"] == ra.ROLE_NAME]
    assert role["type"] == "Admin"
    assert role_rules(emulator) == list(ra.ROLE_PERMISSIONS) and role_rules(emulator)[-1] == ("*", "deny")
    # The previous value stays readable as AWSPREVIOUS.
    previous = boto3.client("secretsmanager", region_name=REGION).get_secret_value(
        SecretId=api_secret, VersionStage="AWSPREVIOUS")
    assert json.loads(previous["SecretString"]) == admin
    # Nothing secret is printed.
    assert keys["apikey"] not in out + err and keys["secretkey"] not in out + err
    assert admin["secretkey"] not in out + err and ADMIN_PASSWORD not in out + err
    assert not [r for r in emulator.requests if ADMIN_PASSWORD in json.dumps(r)]


def test_a_second_rotation_replaces_the_pair_and_the_old_one_stops_working(emulator, api_secret, admin_secret):
    assert rotate(emulator, api_secret)[0] == 0
    first = secret_keys(api_secret)
    code, _, err = rotate(emulator, api_secret)
    assert code == 0, err
    second = secret_keys(api_secret)
    assert second != first
    with pytest.raises(AuthError):
        Api(emulator.url, first["apikey"], first["secretkey"], FAST).call("listZones")
    assert Api(emulator.url, second["apikey"], second["secretkey"], FAST).call("listZones") == {}
    # One role, one account: the rotation creates neither twice.
    assert [r["name"] for r in emulator.roles.values()].count(ra.ROLE_NAME) == 1
    assert [a["name"] for a in emulator.accounts.values()].count(ra.ACCOUNT_NAME) == 1


def test_the_registration_and_status_work_with_the_registrations_keys(emulator, api_secret, admin_secret):
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


def test_the_registrations_keys_call_its_commands_and_nothing_else(emulator, api_secret, admin_secret):
    assert rotate(emulator, api_secret)[0] == 0
    keys = secret_keys(api_secret)
    leaked = Api(emulator.url, keys["apikey"], keys["secretkey"], FAST)
    admin_account = next(a for a in emulator.accounts.values() if a["name"] == "admin")
    admin_user = next(u for u in emulator.account_users.values() if u["username"] == "admin")
    [role] = [r for r in emulator.roles.values() if r["name"] == ra.ROLE_NAME]
    for command, params in (("deleteAccount", {"id": admin_account["id"]}),
                            ("registerUserKeys", {"id": admin_user["id"]}),
                            ("createRolePermission", {"roleid": role["id"], "rule": "*", "permission": "allow"}),
                            ("listRolePermissions", {"roleid": role["id"]}), ("listUsers", {})):
        with pytest.raises(CloudStackError) as refused:
            leaked.call(command, **params)
        # ApiServer: UnavailableCommandException -> UNSUPPORTED_ACTION_ERROR
        assert refused.value.code == 432, command
        assert refused.value.text == (f"The API [{command}] does not exist or is not available for the account "
                                      f"{ra.ACCOUNT_NAME}.")
    assert admin_account["id"] in emulator.accounts and role_rules(emulator) == list(ra.ROLE_PERMISSIONS)
    # Every command the registration and `status` send passes the role's check.
    user = registration_user(emulator)["id"]
    for command in ra.REGISTRATION_COMMANDS:
        emulator.check_access(user, command)
    assert leaked.call("listZones") == {}


def test_an_admin_type_role_allows_what_no_rule_matches_unless_a_deny_does(emulator, api_secret):
    # DynamicRoleBasedAPIAccessChecker.checkApiPermissionByRole: rules in order, the first
    # match decides; no match falls back to the @APICommand(authorized=...) types.
    admin = Api(emulator.url, emulator.apikey, emulator.secretkey, FAST)

    def account(name, rules):
        role = admin.call("importRole", name=name, type="Admin", rules=rules)["role"]
        user = admin.call("createAccount", username=name, password=f"Pw-1-{name}", roleid=role["id"],
                          email=f"{name}@example.invalid", firstname=name, lastname=name)["account"]["user"][0]
        keys = admin.call("registerUserKeys", id=user["id"])["userkeys"]
        return Api(emulator.url, keys["apikey"], keys["secretkey"], FAST)

    open_ = account("open", [{"rule": "listZones", "permission": "allow"}])
    assert open_.call("listHosts") == {}  # matched by no rule: the Admin fallback
    narrow = account("narrow", [{"rule": "listZones", "permission": "allow"}, {"rule": "list*", "permission": "deny"}])
    assert narrow.call("listZones") == {}
    with pytest.raises(CloudStackError) as refused:
        narrow.call("listHosts")
    assert refused.value.code == 432
    assert refused.value.text == "The API [listHosts] does not exist or is not available for the account narrow."


def test_rotation_needs_only_the_admin_password_not_working_keys(emulator, api_secret, admin_secret):
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.put_secret_value(SecretId=api_secret, SecretString=json.dumps({"apikey": "not-a-key", "secretkey": "nope"}))
    code, _, err = rotate(emulator, api_secret)
    assert code == 0, err
    keys = secret_keys(api_secret)
    assert emulator.key_owner[keys["apikey"]] == registration_user(emulator)["id"]


def test_rotation_with_a_wrong_admin_password_leaves_the_secret_alone(emulator, api_secret, admin_secret):
    before = secret_keys(api_secret)
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=admin_secret, SecretString=json.dumps({"username": "admin", "password": "not-the-password"}))
    code, out, err = rotate(emulator, api_secret)
    assert code == 1 and "refused the admin's login" in err and "not-the-password" not in out + err
    assert secret_keys(api_secret) == before
    assert not [a for a in emulator.accounts.values() if a["name"] == ra.ACCOUNT_NAME]


def test_rotation_brings_an_older_role_to_its_rules_with_the_deny_last(emulator, api_secret, admin_secret):
    # A role as earlier versions created it: allow rules only, the rotation's among them.
    admin = Api(emulator.url, emulator.apikey, emulator.secretkey, FAST)
    old = sorted(set(ra.ROLE_RULES[2:]) | set(ra.RETIRED_RULES))
    role = admin.call("importRole", name=ra.ROLE_NAME, type="Admin", description=ra.ROLE_DESCRIPTION,
                      rules=[{"rule": r, "permission": "allow"} for r in old])["role"]
    admin.call("createAccount", username=ra.ACCOUNT_NAME, password="Pw-1-old", roleid=role["id"],
               email=ra.ACCOUNT_EMAIL, firstname=ra.ACCOUNT_FIRSTNAME, lastname=ra.ACCOUNT_LASTNAME)
    code, _, err = rotate(emulator, api_secret)
    assert code == 0, err
    # The retired rules gone, the two missing allows added, the deny created after them.
    assert role_rules(emulator) == [(r, "allow") for r in ra.ROLE_RULES[2:] + ra.ROLE_RULES[:2]] + [("*", "deny")]
    # A later rule the role lacks lands after the deny; the rotation moves the deny last again.
    emulator.role_rules[:] = [r for r in emulator.role_rules if r["rule"] != ra.ROLE_RULES[0]]
    code, _, err = rotate(emulator, api_secret)
    assert code == 0, err
    rules = role_rules(emulator)
    assert rules[-1] == ("*", "deny") and sorted(rules[:-1]) == [(r, "allow") for r in ra.ROLE_RULES]


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
        {"rule": "LISTZONES*", "permission": "allow"}, {"rule": "*", "permission": "deny"}])["role"]
    user = admin.call("createAccount", username="cased", password="Pw-1-cased", roleid=role["id"],
                      email="c@example.invalid", firstname="c", lastname="c")["account"]["user"][0]
    keys = admin.call("registerUserKeys", id=user["id"])["userkeys"]
    cased = Api(emulator.url, keys["apikey"], keys["secretkey"], FAST)
    assert cased.call("listZones") == {}
    assert [r["rule"] for r in emulator.role_rules if r["roleid"] == role["id"]] == ["LISTZONES*", "*"]
    with pytest.raises(CloudStackError) as refused:
        cased.call("addCluster")
    assert refused.value.code == 432


def test_the_stack_gives_the_api_the_api_keys_and_the_admin_secrets(monkeypatch):
    import argparse
    from types import SimpleNamespace

    from components.cli import automation, status
    from components.registration.client import RegistrationError

    arns = {"api_keys": "arn:aws:secretsmanager:eu-west-1:1:secret:k",
            "admin": "arn:aws:secretsmanager:eu-west-1:1:secret:a"}
    outputs = {"apiEndpoint": SimpleNamespace(value="https://api/client/api"), "secretArns": SimpleNamespace(value=arns)}
    monkeypatch.setattr(automation, "open_stack", lambda stack, root: SimpleNamespace(outputs=lambda: outputs))
    monkeypatch.setattr(status, "read_stack", lambda root, stack: SimpleNamespace(values={}))
    args = argparse.Namespace(dir=".", stack="dev")
    assert status.stack_connection(args, "api_keys", "admin") == (
        "https://api/client/api", arns["api_keys"], arns["admin"], "eu-west-1")
    del arns["admin"]
    with pytest.raises(RegistrationError, match="secretArns.admin"):
        status.stack_connection(args, "api_keys", "admin")
