"""The stack's `ldap` settings against a real OpenLDAP server (Debian's slapd, emulator/slapd.py):
the bind principal and base DN work, and the filters CloudStack builds from the settings
(components/model/ldap.py, as OpenLdapUserManagerImpl builds them) find exactly the users of
the linked group or OU; a wrong bind password is refused as the directory refuses it."""

from __future__ import annotations

import json

import pytest
from ldap3 import NONE, SUBTREE, Connection, Server
from ldap3.core.exceptions import LDAPInvalidFilterError

from components.model import catalog, ldap
from components.model.settings import SettingsError, parse_settings
from emulator import slapd


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    found, proc = slapd.start(tmp_path_factory.mktemp("slapd"))
    yield found
    slapd.stop(proc)


def stack_directory(server: slapd.Directory, **fields) -> ldap.LdapDirectory:
    """What the stack's settings make of an `ldap` object naming this server."""
    raw = {"servers": [{"host": server.host, "port": server.port}], "baseDn": slapd.BASE_DN,
           "bindPrincipal": slapd.BIND_DN, "bindPassword": slapd.BIND_PASSWORD,
           "groupPrincipal": slapd.GROUP_DN, **fields}
    return parse_settings({"adminCidrs": ["203.0.113.0/24"], "ldap": json.dumps(raw)}, catalog.instance_facts,
                          secret_keys={"ldap"}).ldap


def server_of(directory: slapd.Directory) -> Server:
    # No schema read: like JNDI, ask for attributes the directory may not have (AD's
    # userAccountControl is among CloudStack's return attributes).
    return Server(directory.host, port=directory.port, get_info=NONE)


def bound(server: slapd.Directory, d: ldap.LdapDirectory) -> Connection:
    """LdapContextFactory.createBindContext: a simple bind as ldap.bind.principal."""
    assert (d.servers[0].host, d.servers[0].port) == (server.host, server.port)
    conn = Connection(server_of(server), user=d.bind_principal, password=d.bind_password,
                      raise_exceptions=False)
    assert conn.bind(), conn.result
    return conn


def search(conn: Connection, base: str, flt: str, d: ldap.LdapDirectory) -> set[str]:
    """SearchControls.SUBTREE_SCOPE with LdapConfiguration.getReturnAttributes."""
    conn.search(base, flt, search_scope=SUBTREE, attributes=list(ldap.return_attributes(d)))
    return {str(e.entry_dn) for e in conn.entries}


def test_the_bind_principal_and_base_dn_list_exactly_the_principle_groups_members(directory):
    d = stack_directory(directory)
    conn = bound(directory, d)
    # OpenLdapUserManagerImpl.searchUsers under ldap.basedn: listLdapUsers, importLdapUsers
    assert search(conn, d.base_dn, ldap.users_filter(d), d) == {slapd.user_dn("alice"), slapd.user_dn("bob")}
    # the attributes CloudStack creates the account from
    conn.search(slapd.user_dn("alice"), "(objectClass=*)", attributes=list(ldap.return_attributes(d)))
    entry = conn.entries[0]
    assert (str(entry.uid), str(entry.mail), str(entry.givenName), str(entry.sn)) == \
        ("alice", "alice@sbdemo1.local", "Alice", "Example")


def test_without_a_principle_group_every_user_object_is_listed(directory):
    d = stack_directory(directory, groupPrincipal=None)
    assert search(bound(directory, d), d.base_dn, ldap.users_filter(d), d) == \
        {slapd.user_dn(n) for n in slapd.PEOPLE}


def test_a_group_link_finds_exactly_its_members_and_each_can_sign_in(directory):
    d = stack_directory(directory, links=[{"domain": "ROOT", "type": "GROUP", "name": slapd.GROUP_DN}])
    conn = bound(directory, d)
    link = d.links[0]
    found = {}
    for name in slapd.PEOPLE:
        base, flt = ldap.link_search(d, link, name)
        found[name] = search(conn, base, flt, d)
    # OpenLdapUserManagerImpl.searchUser: exactly one entry, or the sign-in is refused
    assert {n for n, hits in found.items() if len(hits) == 1} == {"alice", "bob"}
    assert all(not found[n] for n in ("carol", "dave", "erin"))
    # LdapManagerImpl.canAuthenticate: a bind as the entry found, with the user's password
    member = Connection(server_of(directory), user=found["alice"].pop(),
                        password=slapd.USER_PASSWORD, raise_exceptions=False)
    assert member.bind()
    wrong = Connection(server_of(directory), user=slapd.user_dn("bob"),
                       password="not-bobs", raise_exceptions=False)
    assert not wrong.bind() and wrong.result["description"] == "invalidCredentials"


def test_an_ou_link_finds_the_users_under_the_ou(directory):
    d = stack_directory(directory, links=[{"domain": "ROOT", "type": "OU", "name": slapd.STAFF_OU}])
    conn = bound(directory, d)
    hits = {n: search(conn, *ldap.link_search(d, d.links[0], n), d) for n in slapd.PEOPLE}
    assert {n for n, h in hits.items() if h} == {"erin"}


def test_a_username_with_filter_characters_matches_nobody(directory):
    d = stack_directory(directory, links=[{"domain": "ROOT", "type": "GROUP", "name": slapd.GROUP_DN}])
    # "*" would match every member if it were not escaped (LdapUtils.escapeLDAPSearchFilter)
    assert search(bound(directory, d), *ldap.link_search(d, d.links[0], "*"), d) == set()


def test_a_wrong_bind_password_is_refused_with_invalid_credentials(directory):
    d = stack_directory(directory, bindPassword="not-the-password")
    conn = Connection(server_of(directory), user=d.bind_principal,
                      password=d.bind_password, raise_exceptions=False)
    # javax.naming.AuthenticationException [LDAP: error code 49 - Invalid Credentials], which
    # LdapManagerImpl.addConfiguration answers as "Unable to bind to the given LDAP server"
    assert not conn.bind()
    assert (conn.result["result"], conn.result["description"]) == (49, "invalidCredentials")


def test_a_group_whose_dn_has_filter_syntax_is_linked_by_its_escaped_form(directory):
    # CloudStack would send "(memberof=cn=Team (EU),...)": no valid filter (JNDI's
    # InvalidSearchFilterException), so nobody could sign in; the stack refuses that name
    conn = bound(directory, stack_directory(directory))
    with pytest.raises(LDAPInvalidFilterError):
        conn.search(slapd.BASE_DN, f"(&(objectClass=inetOrgPerson)(uid=carol)(memberof={slapd.TEAM_DN}))")
    with pytest.raises(SettingsError, match=r"ldap\.links\[0\]\.name"):
        stack_directory(directory, links=[{"domain": "ROOT", "type": "GROUP", "name": slapd.TEAM_DN}])
    # the same DN with RFC 4515 escapes, which the directory reads back as the group's DN
    escaped = slapd.TEAM_DN.replace("(", "\\28").replace(")", "\\29")
    d = stack_directory(directory, links=[{"domain": "ROOT", "type": "GROUP", "name": escaped}])
    hits = {n: search(conn, *ldap.link_search(d, d.links[0], n), d) for n in slapd.PEOPLE}
    assert {n for n, h in hits.items() if h} == {"carol"}
