"""The emulator's accounts, users, their API keys and roles (mixed into server.Emulator).

As the real sources behave (apache/cloudstack):
- Every signed request is made by the user whose API key it carries; the user's account's
  role decides whether the command is available (ApiServer.verifyRequest ->
  commandAvailable -> DynamicRoleBasedAPIAccessChecker.checkAccess). The built-in Root
  Admin role (id 1, type Admin) may call everything. Any other role: its rules in order,
  the first whose rule matches the command decides (allow, or deny); a rule is a command
  name in which `*` matches any run of word characters, compared case-insensitively
  (api/src/main/java/org/apache/cloudstack/acl/Rule.java, matches). No rule
  matching: the real server still allows the commands whose @APICommand(authorized=...)
  names the role's type; the emulator models none of those, so it refuses more, never
  less. Refused: UnavailableCommandException, which ApiServer answers with
  UNSUPPORTED_ACTION_ERROR (432) and the text "The API [<command>] does not exist or is
  not available for the account <account name>.".
- importRole creates a role with all its rules at once and refuses a name in use
  (RoleManagerImpl.importRole; createRole, which the code does not call, would take a
  second role of one name); listRoles `name` is a LIKE on the name (RoleDaoImpl.findAllByName).
- createAccount: username, password, email, firstname, lastname, and a role id or an
  account type ("Neither account type and role ID are not provided"); the account is named
  after the user unless `account` is given; one name per domain ("The specified account:
  <name> already exists"); the domain defaults to the caller's (AccountManagerImpl).
- registerUserKeys replaces the user's key pair: the previous API key stops working
  (AccountManagerImpl.createApiKeyAndSecretKey writes the new pair into the user's row).
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

#: RoleType.Admin.getId(): the built-in Root Admin role.
ROOT_ADMIN_ROLE = "root-admin-role-1"
ROLE_TYPES = ("Admin", "ResourceAdmin", "DomainAdmin", "User")
#: Account.Type ordinals (accounttype) of the role types.
ACCOUNT_TYPE = {"Admin": 1, "ResourceAdmin": 3, "DomainAdmin": 2, "User": 0}


class AccountsError(Exception):
    """An error answer of the role/account commands; server.Emulator sends it as its ApiError."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


class Accounts:
    users: dict[str, str]          # API key -> secret key (server.Emulator._authenticate)
    domains: dict[str, dict]

    def api_names(self) -> set[str]:
        """The commands the server has (ApiServer.isValidApiName): server.Emulator's contract."""
        raise NotImplementedError

    def _init_accounts(self, apikey: str) -> None:
        root = next(iter(self.domains))
        self.roles: dict[str, dict] = {ROOT_ADMIN_ROLE: {"id": ROOT_ADMIN_ROLE, "name": "Root Admin", "type": "Admin",
                                                         "description": "Default root admin role", "ispublic": True,
                                                         "isdefault": True}}
        self.role_rules: list[dict] = []          # in the order they were created (sort_order)
        admin_user = str(uuid.uuid4())
        self.accounts: dict[str, dict] = {}
        self.account_users: dict[str, dict] = {}  # user id -> user
        self.key_owner: dict[str, str] = {apikey: admin_user}
        self._add_account("admin", "admin", ROOT_ADMIN_ROLE, root, admin_user)

    def _add_account(self, name: str, username: str, role_id: str, domain_id: str, user_id: str) -> dict:
        account_id = str(uuid.uuid4())
        role = self.roles[role_id]
        account = {"id": account_id, "name": name, "accounttype": ACCOUNT_TYPE[role["type"]], "roleid": role_id,
                   "rolename": role["name"], "roletype": role["type"], "domainid": domain_id,
                   "domain": self.domains[domain_id]["name"], "state": "enabled"}
        self.accounts[account_id] = account
        self.account_users[user_id] = {"id": user_id, "username": username, "account": name,
                                       "accountid": account_id, "domainid": domain_id, "state": "enabled"}
        return account

    def _account_view(self, account: dict) -> dict:
        users = [dict(u) for u in self.account_users.values() if u["accountid"] == account["id"]]
        return {**account, "user": users}

    # -- the access check ------------------------------------------------------------
    def check_access(self, apikey: str, command: str) -> None:
        """Raises AccountsError(432) when the key's user's role does not allow `command`."""
        user = self.account_users[self.key_owner[apikey]]
        account = self.accounts[user["accountid"]]
        if account["roleid"] == ROOT_ADMIN_ROLE:
            return
        for rule in self.role_rules:
            if rule["roleid"] == account["roleid"] and re.fullmatch(
                    r"\w*".join(map(re.escape, rule["rule"].lower().split("*"))), command.lower()):
                if rule["permission"] == "allow":
                    return
                break
        raise AccountsError(432, f"The API [{command}] does not exist or is not available for the account "
                                 f"{account['name']}.")

    # -- roles (RoleManagerImpl) -------------------------------------------------------
    def _cmd_listRoles(self, a: dict) -> dict:
        name = a.get("name", "").lower()
        items = [dict(r) for r in self.roles.values() if name in r["name"].lower()
                 and a.get("id", r["id"]) == r["id"] and a.get("type", r["type"]) == r["type"]]
        return self._list("role", items, a)

    def _cmd_importRole(self, a: dict) -> dict:
        # ImportRoleCmd.getRules: each rule names an API unless it has a wildcard, and has a
        # permission; RoleManagerImpl.importRole: a name in use is refused, the role and its
        # rules are created in one transaction.
        if a.get("type") not in ROLE_TYPES:
            raise AccountsError(431, "Invalid role type provided")
        entries: dict[int, dict] = {}
        for key, value in a.items():
            m = re.fullmatch(r"rules\[(\d+)\]\.(\w+)", key)
            if m:
                entries.setdefault(int(m.group(1)), {})[m.group(2)] = value
        rules = [entries[i] for i in sorted(entries)]
        for r in rules:
            if not r.get("rule"):
                raise AccountsError(431, "Empty rule provided in rules param")
            if "*" not in r["rule"] and r["rule"] not in self.api_names():
                raise AccountsError(431, f"Invalid api name: {r['rule']} provided in rules param")
            if r.get("permission", "").lower() not in ("allow", "deny"):
                raise AccountsError(431, f"Invalid permission: {r.get('permission')} provided in rules param")
        if any(r["name"] == a["name"] for r in self.roles.values()):
            raise AccountsError(530, "Role already exists")
        role_id = str(uuid.uuid4())
        self.roles[role_id] = {"id": role_id, "name": a["name"], "type": a["type"],
                               "description": a.get("description", ""),
                               "ispublic": a.get("ispublic", "true") == "true", "isdefault": False}
        for r in rules:
            self.role_rules.append({"id": str(uuid.uuid4()), "roleid": role_id, "rolename": a["name"],
                                    "rule": r["rule"], "permission": r["permission"].lower(),
                                    "description": r.get("description", "")})
        return {"role": dict(self.roles[role_id])}

    def _role(self, role_id: str) -> dict:
        if role_id not in self.roles:
            raise AccountsError(431, "Invalid role id provided")
        return self.roles[role_id]

    def _cmd_createRolePermission(self, a: dict) -> dict:
        role = self._role(a["roleid"])
        if role["id"] == ROOT_ADMIN_ROLE:
            raise AccountsError(431, "Default roles cannot be updated")  # RoleManagerImpl.checkCallerAccess
        if a["permission"].lower() not in ("allow", "deny"):
            raise AccountsError(431, "Values for permission parameter should be: allow or deny")
        if not re.fullmatch(r"[a-zA-Z0-9*]+", a["rule"]):  # RolePermissionEntity.Rule.validate
            raise AccountsError(431, "Only API names and wildcards are allowed, invalid rule provided: " + a["rule"])
        rule = {"id": str(uuid.uuid4()), "roleid": role["id"], "rolename": role["name"], "rule": a["rule"],
                "permission": a["permission"].lower(), "description": a.get("description", "")}
        self.role_rules.append(rule)
        return {"rolepermission": dict(rule)}

    def _cmd_listRolePermissions(self, a: dict) -> dict:
        items = [dict(r) for r in self.role_rules if r["roleid"] == a.get("roleid", r["roleid"])]
        return self._list("rolepermission", items, a)

    # -- accounts and users (AccountManagerImpl, QueryManagerImpl) ----------------------
    def _cmd_createAccount(self, a: dict) -> dict:
        if not a.get("roleid") and "accounttype" not in a:
            raise AccountsError(431, "Neither account type and role ID are not provided")
        role_id = a.get("roleid") or next(r["id"] for r in self.roles.values() if r.get("isdefault")
                                          and ACCOUNT_TYPE[r["type"]] == int(a["accounttype"]))
        self._role(role_id)
        domain_id = a.get("domainid") or next(iter(self.domains))
        name = a.get("account") or a["username"]
        if any(x["name"] == name and x["domainid"] == domain_id for x in self.accounts.values()):
            raise AccountsError(530, f"The specified account: {name} already exists")
        account = self._add_account(name, a["username"], role_id, domain_id, str(uuid.uuid4()))
        return {"account": self._account_view(account)}

    def _cmd_listAccounts(self, a: dict) -> dict:
        items = [self._account_view(x) for x in self.accounts.values()
                 if a.get("name", x["name"]) == x["name"] and a.get("id", x["id"]) == x["id"]]
        return self._list("account", items, a)

    def _cmd_listUsers(self, a: dict) -> dict:
        items = [dict(u) for u in self.account_users.values()
                 if all(a.get(k, u[k]) == u[k] for k in ("id", "username", "account"))]
        return self._list("user", items, a)

    def _cmd_registerUserKeys(self, a: dict) -> dict:
        if a["id"] not in self.account_users:
            raise AccountsError(431, "unable to find user by id")
        for key in [k for k, owner in self.key_owner.items() if owner == a["id"]]:
            del self.key_owner[key]
            del self.users[key]
        apikey, secretkey = secrets.token_urlsafe(64), secrets.token_urlsafe(64)
        self.users[apikey] = secretkey
        self.key_owner[apikey] = a["id"]
        return {"userkeys": {"apikey": apikey, "secretkey": secretkey}}
