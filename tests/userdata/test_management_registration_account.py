"""The first management server's own CloudStack account for the registration: a role
allowed exactly the registration's commands and denied every other one (the deny created
after the allows, so it is the last rule), an account in the ROOT domain with it, and that
account's keys (never the admin's) in the api-keys secret; created once."""

import json

from bootlab import MANAGEMENT, SECRETS, render
from components.model import registration_account as ra

SCRIPT = "management-server.sh"


def boot(machine):
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output
    return r


def test_the_first_boot_stores_the_registration_accounts_keys_not_the_admins(machine):
    boot(machine)
    api = machine.state()["api"]
    [role] = api["roles"]
    assert (role["name"], role["type"]) == (ra.ROLE_NAME, "Admin")
    # One allow rule per command (`<command>*` for those of newer releases only), all in one
    # importRole; then the deny of every other command, created after them and so last.
    assert role["rules"] == [list(p) for p in ra.ROLE_PERMISSIONS] and role["rules"][-1] == ["*", "deny"]
    calls = [c for c in machine.calls() if c.get("api")]
    names = [c["api"] for c in calls]
    assert names.count("importRole") == 1 and names.count("createRolePermission") == 1
    assert names.index("importRole") < names.index("createRolePermission") < names.index("createAccount")
    imported = [a for a in calls[names.index("importRole")]["args"] if a.startswith("rules[")]
    assert "rules[0].permission=allow" in imported and not [a for a in imported if a.endswith("=deny")]
    create = calls[names.index("createRolePermission")]["args"]
    assert "rule=*" in create and "permission=deny" in create
    [account] = api["accounts"]
    assert account["name"] == ra.ACCOUNT_NAME and account["roleid"] == role["id"]
    [user] = account["user"]
    keys = json.loads(machine.state()["secrets"][SECRETS.api_keys])
    assert api["keys_of_user"] == {user["id"]: 1} and keys == {"apikey": "api-1", "secretkey": "sec-1"}
    assert "admin-uuid" not in api["keys_of_user"]


def test_the_accounts_password_is_never_on_a_command_line_nor_kept(machine):
    r = boot(machine)
    create = [c for c in machine.calls() if c.get("api") == "createAccount"]
    assert len(create) == 1
    args = create[0]["args"]
    # Sent from a file (curl --data-urlencode password@FILE), the file gone after.
    password_arg = next(a for a in args if a.startswith("password"))
    assert password_arg.startswith("password@")
    assert not machine.file(password_arg.split("@", 1)[1]).exists()
    assert "registration-password" not in r.output


def test_a_boot_after_one_that_stopped_before_the_secret_creates_no_second_role_or_account(machine):
    # The first boot creates the role and the account, then cannot write the secret.
    grant = ["secretsmanager:PutSecretValue", SECRETS.api_keys]

    def deny(s):
        s["iam"]["grants"]["cloudstack-ec2-bootstrap"].remove(grant)
        s["iam"]["grants"]["not-attached"] = [grant]
    machine.update(deny)
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status != 0 and "PutSecretValue" in r.output
    assert len(machine.state()["api"]["accounts"]) == 1

    def allow(s):
        s["iam"]["grants"]["cloudstack-ec2-bootstrap"].append(grant)
        del s["iam"]["grants"]["not-attached"]
        # and rules lost on the way (the deny among them): the next boot adds what is missing
        del s["api"]["roles"][0]["rules"][3:]
    machine.update(allow)
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    calls = [c["api"] for c in machine.calls() if c.get("api")]
    assert "importRole" not in calls and "createAccount" not in calls
    assert calls.count("createRolePermission") == len(ra.ROLE_PERMISSIONS) - 3
    api = machine.state()["api"]
    assert len(api["roles"]) == 1 and len(api["accounts"]) == 1
    assert api["roles"][0]["rules"] == [list(p) for p in ra.ROLE_PERMISSIONS]
    user = api["accounts"][0]["user"][0]["id"]
    assert api["keys_of_user"] == {user: 2}
    assert json.loads(machine.state()["secrets"][SECRETS.api_keys]) == {"apikey": "api-2", "secretkey": "sec-2"}


def test_a_bootstrapped_cloud_creates_nothing(machine):
    boot(machine)
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    assert not [c for c in machine.calls() if c.get("api")]
    api = machine.state()["api"]
    assert len(api["roles"]) == 1 and len(api["accounts"]) == 1 and api["keys_registered"] == 1


def test_an_older_role_loses_the_rotations_rules_and_gets_the_deny_last(machine):
    # A role as earlier versions made it: allow rules only, the key rotation's among them,
    # and one allow missing; the deny must still end up last.
    def older(s):
        rules = sorted(set(ra.ROLE_RULES[1:]) | set(ra.RETIRED_RULES))
        s["api"]["roles"].append({"id": "role-1", "name": ra.ROLE_NAME, "type": "Admin", "description": "",
                                  "rules": [[r, "allow"] for r in rules] + [["*", "deny"]]})
    machine.update(older)
    boot(machine)
    calls = [c["api"] for c in machine.calls() if c.get("api")]
    assert "importRole" not in calls
    assert calls.count("deleteRolePermission") == len(ra.RETIRED_RULES) and calls.count("updateRolePermission") == 1
    [role] = machine.state()["api"]["roles"]
    assert role["rules"] == [[r, "allow"] for r in ra.ROLE_RULES[1:] + ra.ROLE_RULES[:1]] + [["*", "deny"]]
