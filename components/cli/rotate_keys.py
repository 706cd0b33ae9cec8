"""`cloudstack-ec2 rotate-keys --stack NAME`: a new key pair for the registration's account.

With the keys the api-keys secret holds (the root admin's on a cloud bootstrapped before
the registration had an account of its own; that account's afterwards) this ensures the
registration's role, its rules and its account exist (components/model/registration_account.py,
as the first management server creates them), registers a new key pair for the account's
user, checks the pair with a signed call, and only then writes it to the secret
(PutSecretValue: the value it replaces stays readable as the AWSPREVIOUS version). Up to
4.22 a new pair replaces the user's previous one (AccountManagerImpl.createApiKeyAndSecretKey),
so after a rotation the previous pair of the registration's account no longer signs anything;
from 4.23 a user holds several pairs (RegisterUserKeysCmd adds one; DeleteUserKeysCmd, since
4.23.0, removes one) and the previous pair stays valid until deleted (README).
Nothing secret is printed, logged or written anywhere but the secret.
"""

from __future__ import annotations

import argparse
import json
import secrets
from pathlib import Path
from typing import Any, Callable, TextIO

from components.model import registration_account as ra
from components.registration.client import Api, RegistrationError, aws_session, read_api_keys
from components.cli.status import STATUS_TIMEOUTS, open_connection, stack_connection


def _named(items: list[dict], field: str, name: str) -> dict | None:
    """The item whose `field` is exactly `name` (listRoles' `name` is a LIKE in some releases)."""
    return next((i for i in items if i.get(field) == name), None)


def ensure_role(api: Api) -> str:
    """The registration role's id. A missing role is created with every rule of
    ra.ROLE_RULES by importRole, in one transaction (RoleManagerImpl.importRole, which also
    refuses a name in use); a role found gets each rule it lacks as `allow`."""
    role = _named(api.list("listRoles", "role", name=ra.ROLE_NAME), "name", ra.ROLE_NAME)
    if role is None:
        return api.call("importRole", name=ra.ROLE_NAME, type="Admin", description=ra.ROLE_DESCRIPTION,
                        rules=[{"rule": r, "permission": "allow"} for r in ra.ROLE_RULES])["role"]["id"]
    # listRolePermissions takes no page/pagesize (ListRolePermissionsCmd is not a list command).
    have = {r["rule"] for r in api.get("listRolePermissions", roleid=role["id"]).get("rolepermission", [])}
    for rule in ra.ROLE_RULES:
        if rule not in have:
            api.call("createRolePermission", roleid=role["id"], rule=rule, permission="allow")
    return role["id"]


def ensure_account(api: Api, role_id: str) -> str:
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


def rotate(endpoint: str, secret_id: str, region: str, identity: Any = None) -> str:
    """Rotate as the module says; returns the id of the user whose keys the secret now
    holds. Raises RegistrationError (the secret unchanged) when a step fails."""
    apikey, secretkey = read_api_keys(secret_id, region, STATUS_TIMEOUTS, identity=identity)
    api = Api(endpoint, apikey, secretkey, STATUS_TIMEOUTS)
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
                   connection: Callable[[argparse.Namespace], tuple[str, str, str]] = stack_connection) -> int:
    """Exit 0 rotated; 1 the stack has no API yet, or the API, the keys or the secret failed
    (the secret unchanged); 2 the stack cannot be read. `connection`: as `status`'s."""
    name = "cloudstack-ec2 rotate-keys"
    found = open_connection(name, args, err, connection)
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
                       description="With the keys the stack's api_keys secret holds, ensure the registration's "
                                   f"CloudStack role ({ra.ROLE_NAME}) and account ({ra.ACCOUNT_NAME}) exist, "
                                   "register a new key pair for it, check it with a signed call, then write it "
                                   "to the secret (the previous value stays as AWSPREVIOUS). Your AWS "
                                   "credentials must read and write the secret, and the API must be reachable "
                                   "from here (adminCidrs). Run it again to rotate again.",
                       epilog="exit status: 0 rotated; 1 the API, the keys or the secret failed (the secret is "
                              "unchanged); 2 the stack cannot be read")
    p.add_argument("--stack", default="dev", help="stack name (default: dev)")
    p.add_argument("--dir", default=str(project_root), help="project directory (default: this checkout)")
    p.set_defaults(handler=rotate_command)
