"""The `ldap` key: every field checked before anything is created, each problem naming the
field and its value; what CloudStack's settings and search filters become."""

import json

import pytest

from components.model import catalog, ldap
from components.model.settings import SettingsError, parse_settings

VALID = {"adminCidrs": ["203.0.113.0/24"]}
#: seed 004's directory (an Active Directory), in the stack's syntax
SEED = {
    "provider": "microsoftad",
    "servers": [{"host": "dc1.sbdemo1.local", "port": 389}],
    "baseDn": "DC=sbdemo1,DC=local",
    "bindPrincipal": "CN=cloudstack-ldap,CN=Users,DC=sbdemo1,DC=local",
    "bindPassword": "s3cret-bind",
    "userObject": "user",
    "usernameAttribute": "sAMAccountName",
    "groupPrincipal": "CN=CloudStack,CN=Users,DC=sbdemo1,DC=local",
    "links": [{"domain": "ROOT", "type": "GROUP", "name": "CN=CloudStack,CN=Users,DC=sbdemo1,DC=local",
               "accountType": "user"}],
}
CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ==\n-----END CERTIFICATE-----"


def parse(value, secret=True):
    raw = {**VALID, "ldap": json.dumps(value) if not isinstance(value, str) else value}
    return parse_settings(raw, catalog.instance_facts, secret_keys={"ldap"} if secret else ())


def problems(value, secret=True) -> dict[str, tuple]:
    with pytest.raises(SettingsError) as err:
        parse(value, secret)
    return {p.key: (p.value, p.message) for p in err.value.problems}


def test_absent_means_no_directory():
    assert parse_settings(VALID, catalog.instance_facts).ldap is None


def test_seed_directory_in_the_stack_syntax():
    d = parse(SEED).ldap
    assert d.servers == (ldap.LdapServer("dc1.sbdemo1.local", 389),)
    assert d.settings() == {
        "ldap.provider": "microsoftad", "ldap.basedn": "DC=sbdemo1,DC=local",
        "ldap.bind.principal": "CN=cloudstack-ldap,CN=Users,DC=sbdemo1,DC=local",
        "ldap.user.object": "user", "ldap.username.attribute": "sAMAccountName",
        "ldap.user.memberof.attribute": "memberof",
        "ldap.search.group.principle": "CN=CloudStack,CN=Users,DC=sbdemo1,DC=local",
        # CloudStack's defaults (LdapConfiguration.java) where the stack says nothing
        "ldap.email.attribute": "mail", "ldap.firstname.attribute": "givenname", "ldap.lastname.attribute": "sn",
    }
    assert d.links == (ldap.LdapLink("ROOT", "GROUP", "CN=CloudStack,CN=Users,DC=sbdemo1,DC=local", "user"),)
    assert d.links[0].account_type_id == 0
    # the password is never shown
    assert "s3cret-bind" not in repr(d) and "s3cret-bind" not in repr(parse(SEED))


def test_defaults_are_cloudstacks_and_an_unset_group_principal_stays_unset():
    d = parse({k: v for k, v in SEED.items() if k not in ("provider", "userObject", "usernameAttribute",
                                                         "groupPrincipal")}).ldap
    s = d.settings()
    assert (s["ldap.provider"], s["ldap.user.object"], s["ldap.username.attribute"]) == \
        ("openldap", "inetOrgPerson", "uid")
    # OpenLdapUserManagerImpl filters on any non-null principle group, "" included: never sent
    assert "ldap.search.group.principle" not in s


def test_ldaps_port_defaults_to_636_and_needs_a_ca():
    d = parse({**SEED, "ldaps": True, "caCertificate": CA, "servers": [{"host": "10.0.0.5"}]}).ldap
    assert d.servers == (ldap.LdapServer("10.0.0.5", 636),) and d.ldaps and d.ca_certificate.startswith("-----")
    found = problems({**SEED, "ldaps": True})
    assert "required with ldaps" in found["ldap.caCertificate"][1]


@pytest.mark.parametrize("field, value, words", [
    ("baseDn", "DC=sbdemo1;DC=local", "not a distinguished name"),
    ("baseDn", "sbdemo1.local", "not a distinguished name"),
    ("bindPrincipal", "cloudstack-ldap", "not a distinguished name"),
    ("groupPrincipal", "CN=CloudStack,,DC=local", "not a distinguished name"),
    ("provider", "activedirectory", "one of openldap, microsoftad"),
    ("usernameAttribute", "sAM Account", "LDAP attribute"),
    ("bindPassword", None, "required"),
    ("colour", "blue", "unknown field"),
])
def test_each_bad_field_is_named_with_its_value(field, value, words):
    key, (shown, message) = next(iter(problems({**SEED, field: value}).items()))
    assert key == f"ldap.{field}" and words in message
    if field not in ("bindPassword", "colour"):
        assert shown == value


def test_a_misspelt_field_does_not_show_its_value_which_may_be_the_password():
    # `pulumi config set --secret --path ldap.bindPasword ...`: the error is printed by
    # `pulumi preview` and may end up in a CI log
    found = problems({**SEED, "bindPasword": "the-secret-itself"})
    shown, message = found["ldap.bindPasword"]
    assert shown == "(not shown)" and "did you mean bindPassword?" in message
    assert "the-secret-itself" not in repr(found)


@pytest.mark.parametrize("server, key, words", [
    ({"host": "dc1.sbdemo1.local", "port": 0}, "ldap.servers[0].port", "1..65535"),
    ({"host": "dc1.sbdemo1.local", "port": 65536}, "ldap.servers[0].port", "1..65535"),
    ({"host": "dc1.sbdemo1.local", "port": "ldap"}, "ldap.servers[0].port", "1..65535"),
    ({"host": "dc1 sbdemo1", "port": 389}, "ldap.servers[0].host", "host name"),
])
def test_servers(server, key, words):
    found = problems({**SEED, "servers": [server]})
    assert key in found and words in found[key][1]


def test_a_server_listed_twice_and_no_servers():
    assert "at most once" in problems({**SEED, "servers": SEED["servers"] * 2})["ldap.servers"][1]
    assert "required" in problems({**SEED, "servers": []})["ldap.servers"][1]


def test_a_bind_password_that_is_not_a_secret_is_refused_without_showing_it():
    found = problems(SEED, secret=False)
    assert found["ldap.bindPassword"][0] == "(hidden)" and "--secret" in found["ldap.bindPassword"][1]
    assert "s3cret-bind" not in str(found)


@pytest.mark.parametrize("link, key, words", [
    ({"type": "TEAM", "name": "OU=Staff,DC=sbdemo1,DC=local"}, "ldap.links[0].type", "GROUP or OU"),
    ({"type": "OU", "name": "Staff"}, "ldap.links[0].name", "distinguished name"),
    ({"type": "OU", "name": "OU=Staff,DC=sbdemo1,DC=local", "accountType": "admin"}, "ldap.links[0].accountType",
     "user or domainAdmin"),
    ({"type": "OU", "name": "OU=Staff,DC=sbdemo1,DC=local", "accountType": 1}, "ldap.links[0].accountType",
     "user or domainAdmin"),
    ({"type": "OU", "name": "OU=Staff,DC=sbdemo1,DC=local", "domain": "sales"}, "ldap.links[0].domain", "ROOT"),
])
def test_links(link, key, words):
    found = problems({**SEED, "links": [link]})
    assert key in found and words in found[key][1], found


def test_one_link_per_domain():
    link = SEED["links"][0]
    assert "each domain at most once" in problems({**SEED, "links": [link, {**link, "type": "OU"}]})["ldap.links"][1]


def test_every_problem_at_once():
    found = problems({**SEED, "baseDn": "x", "servers": [{"host": "a", "port": 0}], "ldaps": True,
                      "links": [{"type": "X", "name": "y"}]})
    assert {"ldap.baseDn", "ldap.servers[0].port", "ldap.caCertificate", "ldap.links[0].type",
            "ldap.links[0].name"} <= set(found)


def test_not_an_object():
    with pytest.raises(SettingsError) as err:
        parse_settings({**VALID, "ldap": "[1]"}, catalog.instance_facts, secret_keys={"ldap"})
    assert "expected an object" in str(err.value)


# -- the searches CloudStack builds from the settings ------------------------------------

def test_filters_as_the_user_managers_build_them():
    ad = parse(SEED).ldap
    nested = "memberOf:1.2.840.113556.1.4.1941:"
    assert ldap.users_filter(ad) == (f"(&(objectClass=user)(sAMAccountName=*)"
                                     f"({nested}=CN=CloudStack,CN=Users,DC=sbdemo1,DC=local))")
    base, flt = ldap.link_search(ad, ad.links[0], "jdoe")
    assert base == "DC=sbdemo1,DC=local"
    assert flt == f"(&(objectClass=user)(sAMAccountName=jdoe)({nested}=CN=CloudStack,CN=Users,DC=sbdemo1,DC=local))"
    openldap = parse({**SEED, "provider": "openldap", "userObject": None, "usernameAttribute": None,
                      "links": [{"type": "OU", "name": "OU=Staff,DC=sbdemo1,DC=local"}]}).ldap
    base, flt = ldap.link_search(openldap, openldap.links[0], "jdoe")
    assert (base, flt) == ("OU=Staff,DC=sbdemo1,DC=local", "(&(objectClass=inetOrgPerson)(uid=jdoe))")
    # LdapManagerImpl.getUser escapes the name, then OpenLdapUserManagerImpl.getUsernameFilter again
    assert ldap.users_filter(openldap, "j*") == \
        "(&(objectClass=inetOrgPerson)(uid=j\\5c2a)(memberof=CN=CloudStack,CN=Users,DC=sbdemo1,DC=local))"


def test_escaping_is_ldap_utils():
    assert ldap.escape("a*(b)\\\0") == "a\\2a\\28b\\29\\5c\\00"


def test_a_group_dn_goes_into_the_filter_as_it_is_so_filter_syntax_in_it_is_refused():
    # OpenLdapUserManagerImpl.getMemberOfGroupString: "(" + memberOf + "=" + group + ")", unescaped
    team = "CN=Team (EU),CN=Users,DC=sbdemo1,DC=local"
    found = problems({**SEED, "groupPrincipal": team, "links": [{"type": "GROUP", "name": team},
                                                                  {"domain": "ROOT/a", "type": "GROUP",
                                                                   "name": "CN=Doe\\, John,DC=sbdemo1,DC=local"}]})
    assert set(found) == {"ldap.groupPrincipal", "ldap.links[0].name", "ldap.links[1].name"}
    assert found["ldap.groupPrincipal"][0] == team and "\\28" in found["ldap.groupPrincipal"][1]
    # the same characters as RFC 4515 escapes (also hex escapes of an RFC 4514 DN) are fine, and an
    # OU link's DN is a search base, not a filter
    escaped = "CN=Team \\28EU\\29,CN=Users,DC=sbdemo1,DC=local"
    d = parse({**SEED, "groupPrincipal": escaped, "links": [
        {"type": "GROUP", "name": escaped}, {"domain": "ROOT/a", "type": "OU", "name": "OU=R&D (EU),DC=sbdemo1,DC=local"}]}).ldap
    assert d.group_principal == escaped and ldap.link_search(d, d.links[0], "x")[1].endswith(f"={escaped}))")


def _readme_example() -> tuple[dict, dict]:
    """README "Signing in with LDAP or Active Directory": the `pulumi config set` lines (path →
    value; None for the prompted secret) and the stack file's YAML they make."""
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## Signing in with LDAP or Active Directory"):]
    shell = section[section.index("```sh") + 5:]
    shell = shell[:shell.index("```")]
    sets = {}
    for line in filter(None, (line.split("#")[0].strip() for line in shell.splitlines())):
        m = re.fullmatch(r"pulumi config set (--secret )?--path '(ldap\.[^']+)'\s*('([^']*)'|\S+)?", line)
        assert m, line
        sets[m.group(2)] = None if m.group(1) else (m.group(4) if m.group(4) is not None else m.group(3))
    stack = section[section.index("```yaml") + 7:]
    return sets, yaml.safe_load(stack[:stack.index("```")])["cloudstack-ec2:ldap"]


def test_the_readme_example_is_what_its_commands_set_and_valid():
    sets, stack = _readme_example()

    def leaves(value, path):
        if isinstance(value, dict) and set(value) != {"secure"}:
            return {k: v for key, item in value.items() for k, v in leaves(item, f"{path}.{key}").items()}
        if isinstance(value, list):
            return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{path}[{i}]").items()}
        return {path: None if isinstance(value, dict) else str(value)}

    assert leaves(stack, "ldap") == sets
    d = parse({**stack, "bindPassword": "the prompted one"}).ldap
    assert d.provider == "microsoftad" and d.links[0].account_type_id == 0
