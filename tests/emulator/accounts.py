"""The emulator's accounts, users, their API keys and roles (mixed into server.Emulator).

As the real sources behave (apache/cloudstack):
- Every signed request is made by the user whose API key it carries; a request without
  an API key by the user of its login session (`login` with username, password and
  domain answers a session key and sets the JSESSIONID cookie; later requests carry both:
  ApiServlet). The user's account's role decides whether the command is available
  (ApiServer.verifyRequest -> commandAvailable -> DynamicRoleBasedAPIAccessChecker.checkAccess).
  The built-in Root Admin role (id 1, type Admin) may call everything. Any other role: its
  rules in order (sort order), the first whose rule matches the command decides (allow, or
  deny); a rule is a command name in which `*` matches any run of word characters,
  compared case-insensitively (api/src/main/java/org/apache/cloudstack/acl/Rule.java,
  matches). No rule matching: the real server still allows the commands whose
  @APICommand(authorized=...) names the role's type (checkApiPermissionByRole's
  annotationRoleBasedApisMap). The emulator treats every command as annotated for Admin
  (the real set is nearly every admin command), so a role of type Admin gets any command
  no rule matches; for the other types it models no annotation, refusing more, never
  less. Refused: UnavailableCommandException, which ApiServer answers with
  UNSUPPORTED_ACTION_ERROR (432) and the text "The API [<command>] does not exist or is
  not available for the account <account name>.".
- importRole creates a role with all its rules at once and refuses a name in use
  (RoleManagerImpl.importRole; createRole, which the code does not call, would take a
  second role of one name); listRoles `name` is a LIKE on the name (RoleDaoImpl.findAllByName).
  The emulator keeps importRole's rules in their index order; the real server's come from a
  HashMap (BaseCmd.unpackParams, ImportRoleCmd.getRules) in no order a caller chooses.
- createRolePermission puts the rule after the role's last one (RolePermissionsDaoImpl.persist)
  and refuses a rule the role has ("Rule already exists for the role: <name>",
  RoleManagerImpl.createRolePermission); deleteRolePermission removes one by id ("Invalid role
  permission id provided"); updateRolePermission ruleorder=<ids> puts the role's rules in
  that order, which must name each of them exactly (RolePermissionsDaoImpl.update).
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

    def _init_accounts(self, apikey: str, admin_password: str) -> None:
        root = next(iter(self.domains))
        self.roles: dict[str, dict] = {ROOT_ADMIN_ROLE: {"id": ROOT_ADMIN_ROLE, "name": "Root Admin", "type": "Admin",
                                                         "description": "Default root admin role", "ispublic": True,
                                                         "isdefault": True}}
        self.role_rules: list[dict] = []          # in the order they were created (sort_order)
        admin_user = str(uuid.uuid4())
        self.accounts: dict[str, dict] = {}
        self.account_users: dict[str, dict] = {}  # user id -> user
        self.key_owner: dict[str, str] = {apikey: admin_user}
        self.passwords: dict[str, str] = {}       # user id -> password
        self.sessions: dict[str, tuple[str, str]] = {}  # JSESSIONID -> (user id, session key)
        self._add_account("admin", "admin", ROOT_ADMIN_ROLE, root, admin_user)
        self.passwords[admin_user] = admin_password

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

    # -- login sessions (ApiServlet) ---------------------------------------------------
    def login(self, params: dict[str, str]) -> tuple[dict, str]:
        """(loginresponse body, Set-Cookie value) of `login`; AccountsError(531) for a wrong
        user name or password (ApiServlet: ACCOUNT_ERROR)."""
        user = next((u for u in self.account_users.values() if u["username"] == params.get("username")), None)
        if user is None or self.passwords.get(user["id"]) != params.get("password") or not params.get("password"):
            raise AccountsError(531, f"Failed to authenticate user {params.get('username')} in domain "
                                     f"{params.get('domain', '/')}; please provide valid credentials")
        session, key = secrets.token_hex(16), secrets.token_urlsafe(20)
        self.sessions[session] = (user["id"], key)
        return ({"sessionkey": key, "userid": user["id"], "username": user["username"], "account": user["account"],
                 "domainid": user["domainid"]}, f"JSESSIONID={session}; Path=/client; HttpOnly")

    def session_user(self, sessionkey: str, cookie: str) -> str | None:
        """The user of the session the JSESSIONID cookie names when `sessionkey` is its key."""
        m = re.search(r"(?:^|;\s*)JSESSIONID=([^;]+)", cookie or "")
        found = self.sessions.get(m.group(1)) if m else None
        return found[0] if found and sessionkey and secrets.compare_digest(found[1], sessionkey) else None

    # -- the access check ------------------------------------------------------------
    def check_access(self, user_id: str, command: str) -> None:
        """Raises AccountsError(432) when the user's role does not allow `command`."""
        account = self.accounts[self.account_users[user_id]["accountid"]]
        if account["roleid"] == ROOT_ADMIN_ROLE:
            return
        for rule in self.role_rules:
            if rule["roleid"] == account["roleid"] and re.fullmatch(
                    r"\w*".join(map(re.escape, rule["rule"].lower().split("*"))), command.lower()):
                if rule["permission"] == "allow":
                    return
                break
        else:
            # No rule matches: the @APICommand(authorized=...) fallback, every command
            # counted as annotated for Admin (see the module's docstring).
            if self.roles[account["roleid"]]["type"] == "Admin":
                return
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
        if any(r["roleid"] == role["id"] and r["rule"] == a["rule"] for r in self.role_rules):
            raise AccountsError(531, f"Rule already exists for the role: {role['name']}")
        rule = {"id": str(uuid.uuid4()), "roleid": role["id"], "rolename": role["name"], "rule": a["rule"],
                "permission": a["permission"].lower(), "description": a.get("description", "")}
        self.role_rules.append(rule)
        return {"rolepermission": dict(rule)}

    def _cmd_deleteRolePermission(self, a: dict) -> dict:
        rule = next((r for r in self.role_rules if r["id"] == a["id"]), None)
        if rule is None:
            raise AccountsError(431, "Invalid role permission id provided")
        if rule["roleid"] == ROOT_ADMIN_ROLE:
            raise AccountsError(531, "Role permission cannot be deleted for Default roles")
        self.role_rules.remove(rule)
        return {"success": True}

    def _cmd_updateRolePermission(self, a: dict) -> dict:
        role = self._role(a["roleid"])
        if "ruleorder" not in a:
            raise AccountsError(530, "the emulator implements updateRolePermission with ruleorder only")
        ids = a["ruleorder"].split(",")
        by_id = {r["id"]: r for r in self.role_rules if r["roleid"] == role["id"]}
        if any(i not in by_id for i in ids):
            raise AccountsError(431, "Provided role permission(s) do not exist")
        if sorted(ids) != sorted(by_id):
            raise AccountsError(530, "The role's rule permissions list has changed while you were making updates, "
                                     "aborted re-ordering of rules. Please try again.")
        others = [r for r in self.role_rules if r["roleid"] != role["id"]]
        self.role_rules[:] = others + [by_id[i] for i in ids]
        return {"success": True}

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
        user_id = str(uuid.uuid4())
        account = self._add_account(name, a["username"], role_id, domain_id, user_id)
        self.passwords[user_id] = a["password"]
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
