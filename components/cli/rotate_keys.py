"""`cloudstack-ec2 rotate-keys --stack NAME`: a new key pair for the registration's account.

Signed in as the CloudStack admin (username and password of the stack's admin secret,
naming.SECRET_ADMIN, which the caller's AWS credentials read; CloudStack's login command,
then its session key and cookie, as userdata/management-server.sh api_login does), this
ensures the registration's role holds exactly its rules in order, the trailing deny last
(components/model/registration_account.py, as the first management server creates them),
and that its account exists; registers a new key pair for the account's user, checks the
pair with a signed call, and only then writes it to the api-keys secret (PutSecretValue:
the value it replaces stays readable as the AWSPREVIOUS version). The role allows the
account nothing of this: a leaked pair can neither register keys nor change its role.
Up to 4.22 a new pair replaces the user's previous one
(AccountManagerImpl.createApiKeyAndSecretKey), so after a rotation the previous pair of
the registration's account no longer signs anything; from 4.23 a user holds several pairs
(RegisterUserKeysCmd adds one; DeleteUserKeysCmd, since 4.23.0, removes one) and the
previous pair stays valid until deleted (README).
Nothing secret is printed, logged or written anywhere but the secret.
"""

from __future__ import annotations

import argparse
import json
import secrets
from pathlib import Path
from typing import Any, Callable, TextIO

import requests

from components.model import registration_account as ra
from components.registration.client import Api, RegistrationError, aws_session, classify
from components.cli.status import OUTPUTS_NEED, STATUS_TIMEOUTS, open_connection, stack_connection


class AdminSession:
    """CloudStack's API as a logged-in user: `login` (username, password, domain "/")
    answers a session key and sets the JSESSIONID cookie; every later command sends both
    (ApiServlet checks the session's key against the `sessionkey` parameter). `call` has
    Api.call's shape: the answer's inner object, or RegistrationError (CloudStackError with
    CloudStack's code and text). List parameters of dicts go as CloudStack's map
    parameters (rules[0].rule=...)."""

    def __init__(self, endpoint: str, username: str, password: str, timeout: float) -> None:
        self.endpoint, self._timeout = endpoint, timeout
        self._http = requests.Session()
        self._sessionkey = ""
        key = self.call("login", username=username, password=password, domain="/").get("sessionkey")
        if not key:
            raise RegistrationError(f"CloudStack at {endpoint} answered the admin's login without a session key")
        self._sessionkey = key

    def __reduce__(self):  # never pickle an object holding a session
        raise TypeError("AdminSession holds credentials and cannot be pickled")

    def call(self, command: str, **params: Any) -> dict[str, Any]:
        form: dict[str, str] = {"command": command, "response": "json"}
        if self._sessionkey:
            form["sessionkey"] = self._sessionkey
        for key, value in params.items():
            if isinstance(value, list):
                form.update({f"{key}[{i}].{k}": str(v) for i, item in enumerate(value) for k, v in item.items()})
            else:
                form[key] = str(value)
        try:
            reply = self._http.post(self.endpoint, data=form, timeout=self._timeout)
            doc = reply.json()
            answer = doc.get(f"{command.lower()}response", {}) if isinstance(doc, dict) else {}
        except (requests.RequestException, ValueError) as exc:
            raise RegistrationError(f"{self.endpoint} did not answer {command} as CloudStack's API "
                                    f"({type(exc).__name__})") from None
        if "errorcode" in answer or reply.status_code != 200:
            text = answer.get("errortext", f"HTTP {reply.status_code}")
            if command == "login":
                raise RegistrationError(f"CloudStack at {self.endpoint} refused the admin's login ({text}): the "
                                        f"admin secret must hold the admin's current password") from None
            raise classify(self.endpoint, command, answer.get("errorcode", reply.status_code), text)
        return answer

    def list(self, command: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a list command (one page of up to 500 items: these lists hold one)."""
        return self.call(command, page=1, pagesize=500, **params).get(key, [])


def _named(items: list[dict], field: str, name: str) -> dict | None:
    """The item whose `field` is exactly `name` (listRoles' `name` is a LIKE in some releases)."""
    return next((i for i in items if i.get(field) == name), None)


def ensure_role(api: AdminSession) -> str:
    """The registration role's id, holding ra.ROLE_PERMISSIONS in order. A missing role is
    imported with the allow rules (RoleManagerImpl.importRole, which refuses a name in use),
    then the deny is created, and so goes last (RolePermissionsDaoImpl.persist: sort order =
    number of rules). A role found loses its retired rules (deleteRolePermission), gains the
    rules it lacks, and, when the deny is not last, is reordered with updateRolePermission
    ruleorder (RoleManagerImpl.updateRolePermission), so at no moment does an allow rule
    widen it past the deny and no moment lacks the deny."""
    role = _named(api.list("listRoles", "role", name=ra.ROLE_NAME), "name", ra.ROLE_NAME)
    if role is None:
        role_id = api.call("importRole", name=ra.ROLE_NAME, type="Admin", description=ra.ROLE_DESCRIPTION,
                           rules=[{"rule": r, "permission": "allow"} for r in ra.ROLE_RULES])["role"]["id"]
        api.call("createRolePermission", roleid=role_id, rule=ra.DENY_ALL_RULE, permission="deny")
        return role_id
    # listRolePermissions takes no page/pagesize (ListRolePermissionsCmd is not a list command).
    def rules() -> list[dict]:
        return api.call("listRolePermissions", roleid=role["id"]).get("rolepermission", [])
    for rule in rules():
        if rule["rule"] in ra.RETIRED_RULES:
            api.call("deleteRolePermission", id=rule["id"])
    have = {r["rule"] for r in rules()}
    for rule, permission in ra.ROLE_PERMISSIONS:
        if rule not in have:
            api.call("createRolePermission", roleid=role["id"], rule=rule, permission=permission)
    held = rules()
    if held[-1]["rule"] != ra.DENY_ALL_RULE:
        order = [r["id"] for r in held if r["rule"] != ra.DENY_ALL_RULE] + \
                [r["id"] for r in held if r["rule"] == ra.DENY_ALL_RULE]
        api.call("updateRolePermission", roleid=role["id"], ruleorder=",".join(order))
    return role["id"]


def ensure_account(api: AdminSession, role_id: str) -> str:
    """The id of the registration account's user; the account is created in the caller's
    (ROOT) domain with `role_id` when missing, with a random password nobody keeps: it
    signs in with its keys only."""
    account = _named(api.list("listAccounts", "account", name=ra.ACCOUNT_NAME), "name", ra.ACCOUNT_NAME)
    if account is None:
        account = api.call("createAccount", username=ra.ACCOUNT_NAME, password=secrets.token_urlsafe(32),
                           roleid=role_id, email=ra.ACCOUNT_EMAIL, firstname=ra.ACCOUNT_FIRSTNAME,
                           lastname=ra.ACCOUNT_LASTNAME)["account"]
    users = account.get("user") or api.list("listUsers", "user", account=ra.ACCOUNT_NAME)
    if not users:
        raise RegistrationError(f"the CloudStack account {ra.ACCOUNT_NAME!r} has no user")
    return users[0]["id"]


def admin_login(endpoint: str, admin_secret: str, region: str, identity: Any = None) -> AdminSession:
    """A session of the CloudStack admin whose username and password the admin secret
    holds ({"username", "password"}, naming.SECRET_ADMIN). Raises RegistrationError
    without the secret's value in its text."""
    client = aws_session(identity, region).client("secretsmanager", region_name=region)
    try:
        doc = json.loads(client.get_secret_value(SecretId=admin_secret)["SecretString"])
        username, password = doc["username"], doc["password"]
    except (ValueError, KeyError, TypeError):
        raise RegistrationError(f"the secret {admin_secret} does not hold a JSON object with 'username' and "
                                f"'password'") from None
    except Exception as exc:  # botocore's ClientError and transport errors alike; no value in the text
        raise RegistrationError(f"cannot read the admin secret {admin_secret}: {type(exc).__name__}: "
                                f"{getattr(exc, 'response', {}).get('Error', {}).get('Code', exc)}") from None
    return AdminSession(endpoint, username, password, STATUS_TIMEOUTS.http_timeout)


def rotate(endpoint: str, secret_id: str, admin_secret: str, region: str, identity: Any = None) -> str:
    """Rotate as the module says; returns the id of the user whose keys the api-keys secret
    `secret_id` now holds. Raises RegistrationError (the secret unchanged) when a step fails."""
    api = admin_login(endpoint, admin_secret, region, identity)
    user_id = ensure_account(api, ensure_role(api))
    keys = api.call("registerUserKeys", id=user_id).get("userkeys") or {}
    if not keys.get("apikey") or not keys.get("secretkey"):
        raise RegistrationError(f"registerUserKeys at {endpoint} returned no key pair")
    try:
        # One of the registration's own commands, signed with the new pair.
        Api(endpoint, keys["apikey"], keys["secretkey"], STATUS_TIMEOUTS).list("listZones", "zone")
    except RegistrationError as exc:
        raise RegistrationError(f"the new key pair of {ra.ACCOUNT_NAME!r} does not work ({exc}); the secret "
                                f"{secret_id} was not changed") from None
    client = aws_session(identity, region).client("secretsmanager", region_name=region)
    try:
        client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(
            {"apikey": keys["apikey"], "secretkey": keys["secretkey"]}))
    except Exception as exc:  # botocore's ClientError and transport errors alike; no value in the text
        raise RegistrationError(f"cannot write the new key pair to {secret_id}: {type(exc).__name__}: "
                                f"{getattr(exc, 'response', {}).get('Error', {}).get('Code', exc)}") from None
    return user_id


def rotate_command(args: argparse.Namespace, out: TextIO, err: TextIO,
                   connection: Callable[[argparse.Namespace], tuple[str, ...]] | None = None) -> int:
    """Exit 0 rotated; 1 the stack has no API yet, or the API, the login or a secret failed
    (the api-keys secret unchanged); 2 the stack cannot be read. `connection(args)`: (API
    URL, api-keys secret, admin secret, region), by default from the stack's outputs."""
    name = "cloudstack-ec2 rotate-keys"
    found = open_connection(name, args, err, connection or (lambda a: stack_connection(a, "api_keys", "admin")))
    if isinstance(found, int):
        return found
    try:
        rotate(*found)
    except RegistrationError as exc:
        err.write(f"{name}: {exc}\n")
        return 1
    out.write(f"{found[1]} now holds a new key pair of the CloudStack account {ra.ACCOUNT_NAME} (role "
              f"{ra.ROLE_NAME}); its previous value is the AWSPREVIOUS version\n")
    return 0


def add_command(sub: Any, project_root: Path) -> None:
    """Register `rotate-keys` on the CLI's subcommand parser (the stack options of `status`)."""
    p = sub.add_parser("rotate-keys", help="a new API key pair for the registration's own CloudStack account, "
                                           "written to the stack's api_keys secret",
                       description="Signed in as the CloudStack admin (the stack's admin secret), ensure the "
                                   f"registration's CloudStack role ({ra.ROLE_NAME}: its allow rules, then a "
                                   f"deny of every other command) and account ({ra.ACCOUNT_NAME}) exist, "
                                   "register a new key pair for it, check it with a signed call, then write it "
                                   "to the api_keys secret (the previous value stays as AWSPREVIOUS). Your AWS "
                                   "credentials must read the admin secret and write the api_keys one, and the "
                                   "API must be reachable from here (adminCidrs). Run it again to rotate again. " + OUTPUTS_NEED,
                       epilog="exit status: 0 rotated; 1 the API, the admin's login or a secret failed, or the "
                              "Pulumi CLI is missing (the api_keys secret is unchanged); 2 the stack cannot be "
                              "read")
    p.add_argument("--stack", default="dev", help="stack name (default: dev)")
    p.add_argument("--dir", default=str(project_root), help="project directory (default: this checkout)")
    p.set_defaults(handler=rotate_command)
