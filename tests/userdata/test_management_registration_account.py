"""The first management server's own CloudStack account for the registration: a role
allowed exactly the registration's commands, an account in the ROOT domain with it, and
that account's keys (never the admin's) in the api-keys secret; created once."""

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
    # One allow rule per command (`<command>*` for those of newer releases only), all in one importRole.
    assert sorted(role["rules"]) == [[rule, "allow"] for rule in ra.ROLE_RULES]
    calls = [c["api"] for c in machine.calls() if c.get("api")]
    assert calls.count("importRole") == 1 and "createRolePermission" not in calls
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
        # and a rule lost on the way: the next boot adds what is missing
        del s["api"]["roles"][0]["rules"][3:]
    machine.update(allow)
    machine.clear_calls()
    r = machine.rerun(SCRIPT)
    assert r.status == 0, r.output
    calls = [c["api"] for c in machine.calls() if c.get("api")]
    assert "importRole" not in calls and "createAccount" not in calls
    assert calls.count("createRolePermission") == len(ra.ROLE_RULES) - 3
    api = machine.state()["api"]
    assert len(api["roles"]) == 1 and len(api["accounts"]) == 1
    assert sorted(api["roles"][0]["rules"]) == [[rule, "allow"] for rule in ra.ROLE_RULES]
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
