"""The CloudStack account the registration signs its API calls with.

Pure module. The first management server creates it while it bootstraps the cloud
(userdata/management-server.sh ensure_registration_account) and `cloudstack-ec2
rotate-keys` creates it on a cloud bootstrapped before it existed
(components/cli/rotate_keys.py); both signed in as the admin, from the names and the
rules below. Its keys are the api-keys secret's (naming.SECRET_API_KEYS); the admin's
password stays the humans' login and the rotation's.

Why a role of its own, an explicit list and a trailing deny: for a role other than the
built-in Root Admin, DynamicRoleBasedAPIAccessChecker.checkApiPermissionByRole
(apache/cloudstack, plugins/acl/dynamic-role-based) takes the role's rules in sort order
and the first whose rule matches the command decides (allow or deny); when none matches,
the command is still allowed if its @APICommand(authorized=...) names the role's type,
and nearly every admin command names Admin. A role of type Admin with allow rules only
would therefore be nearly root admin. The rules are one `allow` per command the
registration and `status` call, then DENY_ALL_RULE (`*`, deny) after all of them, so a
leaked key pair can call those commands and nothing else: not deleteAccount, not
registerUserKeys for another user, not createRolePermission to widen its own role. The
account is of type Admin in the ROOT domain because the registration's commands
(addHost, createZone, updateConfiguration, ...) are root-admin commands
(AccountManagerImpl checks the caller's type). tests/unit/test_registration_account.py
keeps the list equal to the commands the code calls.

Order: RolePermissionsDaoImpl.persist gives each new rule the sort order "number of rules
the role has", so a rule created by createRolePermission goes last. importRole's rules come
from a map parameter (ImportRoleCmd.getRules iterates the map's values, a HashMap in
BaseCmd.unpackParams), whose order is not the request's; so the role is imported with the
allow rules only and the deny is created after them with createRolePermission.
"""

from __future__ import annotations

#: The role (looked up with listRoles name=..., created with its rules by importRole).
ROLE_NAME = "cloudstack-ec2-registration"
ROLE_DESCRIPTION = "cloudstack-ec2: the registration's API calls (rotate its keys with cloudstack-ec2 rotate-keys)"
#: The account and its single user (createAccount names the account after the user).
ACCOUNT_NAME = "cloudstack-ec2-registration"
#: createAccount requires an e-mail address, a first and a last name (CreateAccountCmd);
#: nothing is ever sent to it (.invalid is reserved, RFC 2606).
ACCOUNT_EMAIL = "cloudstack-ec2-registration@cloudstack-ec2.invalid"
ACCOUNT_FIRSTNAME = "cloudstack-ec2"
ACCOUNT_LASTNAME = "registration"

#: What the registration (components/registration) and `status` call.
REGISTRATION_COMMANDS = (
    "addCluster", "addHost", "addImageStore", "addLdapConfiguration", "addNetworkServiceProvider",
    "addTrafficType", "cancelHostAsDegraded", "cancelHostMaintenance", "configureInternalLoadBalancerElement",
    "configureVirtualRouterElement", "createPhysicalNetwork", "createPod", "createStoragePool",
    "createVlanIpRange", "createZone", "declareHostAsDegraded", "deleteCluster", "deleteHost",
    "deleteImageStore", "deleteLdapConfiguration", "deletePhysicalNetwork", "deletePod", "deleteStoragePool",
    "deleteTrafficType", "deleteVlanIpRange", "deleteZone", "destroySystemVm", "linkDomainToLdap", "listAlerts",
    "listCapabilities", "listCapacity", "listClusters", "listConfigurations", "listDomains", "listHosts",
    "listImageStores", "listInternalLoadBalancerElements", "listLdapConfigurations", "listManagementServers",
    "listNetworkServiceProviders", "listPhysicalNetworks", "listPods", "listRouters", "listStoragePools",
    "listSystemVms", "listTemplates", "listTrafficTypes", "listVirtualMachines", "listVirtualRouterElements",
    "listVlanIpRanges", "listZones", "prepareForShutdown", "prepareHostForMaintenance", "queryAsyncJobResult",
    "readyForShutdown", "resetConfiguration", "restartNetwork", "restartVPC", "triggerShutdown", "updateCluster",
    "updateConfiguration", "updateHost", "updateNetworkServiceProvider", "updatePhysicalNetwork", "updatePod",
    "updatePodManagementNetworkIpRange", "updateStoragePool", "updateTrafficType", "updateZone",
)
#: Rules earlier versions of the role held for the key rotation, which signed with the
#: account's own keys; the rotation now signs in as the admin and removes them from a role
#: that still has them (a leaked pair could otherwise register keys for any user, or add
#: rules to its own role).
RETIRED_RULES = (
    "createRolePermission", "listAccounts", "listRolePermissions", "listRoles", "listUsers", "registerUserKeys",
)
#: What the registration calls only where the release has it (LdapLink.remove:
#: unlinkDomainFromLdap, @APICommand since 4.23.0, with no `authorized` type, so the role
#: must allow it). Each gets the rule `<command>*`: importRole refuses a rule that names no
#: command of the running release unless it holds a wildcard (ImportRoleCmd.getRules,
#: "Invalid api name"), and a role created before an upgrade must still allow the command
#: after it. No other command's name begins with one of these.
NEWER_RELEASE_COMMANDS = ("unlinkDomainFromLdap",)
#: The role's allow rules, one per command, in this order.
ROLE_RULES = tuple(sorted(set(REGISTRATION_COMMANDS) | {f"{c}*" for c in NEWER_RELEASE_COMMANDS}))
#: The role's last rule, with permission deny: every command no allow rule names is
#: refused, the @APICommand(authorized=Admin) fallback included (see the module's docstring).
DENY_ALL_RULE = "*"
#: The role's rules and permissions in the order the role must hold them.
ROLE_PERMISSIONS = tuple((rule, "allow") for rule in ROLE_RULES) + ((DENY_ALL_RULE, "deny"),)
