"""The CloudStack account the registration signs its API calls with.

Pure module. The first management server creates it while it bootstraps the cloud
(userdata/management-server.sh ensure_registration_account) and `cloudstack-ec2
rotate-keys` creates it on a cloud bootstrapped before it existed
(components/cli/rotate_keys.py); both from the names and the rules below. Its keys are the
api-keys secret's (naming.SECRET_API_KEYS); the admin's password stays the humans' login.

Why a role of its own with an explicit list: a role of type Admin other than the built-in
Root Admin gets only what a rule of its own allows, plus the few commands whose
@APICommand names the Admin type (apache/cloudstack, plugins/acl/dynamic-role-based
DynamicRoleBasedAPIAccessChecker.checkApiPermissionByRole). Listing exactly the commands
the registration, `status` and the key rotation call, rather than a `*` rule, keeps a
leaked key pair from deleting accounts, VMs or volumes, which none of them ever does. The
account is of type Admin in the ROOT domain because the registration's commands (addHost,
createZone, updateConfiguration, ...) are root-admin commands (AccountManagerImpl
checks the caller's type); tests/unit/test_registration_account.py keeps the list equal to
the commands the code calls.
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
#: What the key rotation calls with the keys it rotates (after the first rotation those are
#: this account's own): it finds the role, its rules, the account and its user, adds a rule
#: the list gained since, and registers the new pair. importRole and createAccount are not
#: here: with this account's keys both exist already.
ROTATION_COMMANDS = (
    "createRolePermission", "listAccounts", "listRolePermissions", "listRoles", "listUsers", "registerUserKeys",
)
#: What the registration calls only where the release has it (LdapLink.remove:
#: unlinkDomainFromLdap, @APICommand since 4.23.0, with no `authorized` type, so the role
#: must allow it). Each gets the rule `<command>*`: importRole refuses a rule that names no
#: command of the running release unless it holds a wildcard (ImportRoleCmd.getRules,
#: "Invalid api name"), and a role created before an upgrade must still allow the command
#: after it. No other command's name begins with one of these.
NEWER_RELEASE_COMMANDS = ("unlinkDomainFromLdap",)
#: The role's rules, one `allow` each, in this order.
ROLE_RULES = tuple(sorted(set(REGISTRATION_COMMANDS) | set(ROTATION_COMMANDS)
                          | {f"{c}*" for c in NEWER_RELEASE_COMMANDS}))
