"""A real OpenLDAP directory for the tests: Debian's slapd, run as root on a loopback port from
a plain slapd.conf in a temporary folder (slapd.conf(5), slapd-mdb(5), slapo-memberof(5)),
holding a small tree of users and groups.

The tree (base dc=sbdemo1,dc=local):

- ou=system: cn=cloudstack-ldap, the account CloudStack binds as (password BIND_PASSWORD);
- ou=people: alice, bob (members of cn=CloudStack), carol (of cn=Others), dave (in no group),
  each with password USER_PASSWORD;
- ou=staff: erin (member of no group: only an OU link finds her);
- ou=groups: cn=CloudStack (alice, bob), cn=Others (carol), cn=Team (EU) (carol: a name with
  characters that are syntax in a search filter).

The memberof overlay keeps each user's memberOf, which CloudStack's OpenLDAP user manager
filters on (ldap.user.memberof.attribute, default "memberof").
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

BASE_DN = "dc=sbdemo1,dc=local"
ROOT_DN = f"cn=admin,{BASE_DN}"
ROOT_PASSWORD = "root-of-the-test-tree"
BIND_DN = f"cn=cloudstack-ldap,ou=system,{BASE_DN}"
BIND_PASSWORD = "bind-Passw0rd"
USER_PASSWORD = "user-Passw0rd"
GROUP_DN = f"cn=CloudStack,ou=groups,{BASE_DN}"
OTHERS_DN = f"cn=Others,ou=groups,{BASE_DN}"
TEAM_DN = f"cn=Team (EU),ou=groups,{BASE_DN}"
STAFF_OU = f"ou=staff,{BASE_DN}"
PEOPLE = {"alice": "people", "bob": "people", "carol": "people", "dave": "people", "erin": "staff"}
GROUPS = {GROUP_DN: ("alice", "bob"), OTHERS_DN: ("carol",), TEAM_DN: ("carol",)}

SLAPD = "/usr/sbin/slapd"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


@dataclass(frozen=True)
class Directory:
    host: str
    port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"ldap://{self.host}:{self.port}"


def user_dn(name: str) -> str:
    return f"uid={name},ou={PEOPLE[name]},{BASE_DN}"


def _config(folder: Path) -> str:
    schemas = "\n".join(f"include /etc/ldap/schema/{s}.schema" for s in SCHEMAS)
    return f"""{schemas}
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {folder}/slapd.pid
argsfile {folder}/slapd.args

database mdb
maxsize 10485760
suffix "{BASE_DN}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {folder}/data
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE

access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none
"""


def _tree() -> str:
    entries = [f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: sbdemo1\no: sbdemo1"]
    for ou in ("system", "people", "staff", "groups"):
        entries.append(f"dn: ou={ou},{BASE_DN}\nobjectClass: organizationalUnit\nou: {ou}")
    entries.append(f"dn: {BIND_DN}\nobjectClass: person\nobjectClass: simpleSecurityObject\ncn: cloudstack-ldap\n"
                   f"sn: cloudstack-ldap\nuserPassword: {BIND_PASSWORD}")
    for name in PEOPLE:
        entries.append(f"dn: {user_dn(name)}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name.title()} Example\n"
                       f"givenName: {name.title()}\nsn: Example\nmail: {name}@sbdemo1.local\n"
                       f"userPassword: {USER_PASSWORD}")
    for group, members in GROUPS.items():
        lines = "\n".join(f"member: {user_dn(m)}" for m in members)
        entries.append(f"dn: {group}\nobjectClass: groupOfNames\ncn: {group.split(',')[0][3:]}\n{lines}")
    return "\n\n".join(entries) + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path) -> tuple[Directory, subprocess.Popen]:
    """Start slapd in `folder` (as root: it keeps running as the caller) and load the tree with
    ldapadd. Raises RuntimeError naming what is missing or what slapd said."""
    for tool in (SLAPD, shutil.which("ldapadd")):
        if not tool or not Path(tool).exists():
            raise RuntimeError("slapd and ldap-utils are needed (Debian packages slapd, ldap-utils: "
                               ".ci/apt-packages.txt; scripts/test installs them as root)")
    (folder / "data").mkdir(parents=True)
    (folder / "slapd.conf").write_text(_config(folder))
    port = _free_port()
    url = f"ldap://127.0.0.1:{port}"
    # -d 0: stay in the foreground (so the test owns the process), logging nothing
    proc = subprocess.Popen([SLAPD, "-f", str(folder / "slapd.conf"), "-h", url, "-d", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"slapd exited {proc.returncode}: {proc.stdout.read().decode(errors='replace')[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("slapd did not listen within 20 s")
        time.sleep(0.05)
    added = subprocess.run(["ldapadd", "-x", "-H", url, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
                           input=_tree(), capture_output=True, text=True)
    if added.returncode != 0:
        proc.kill()
        raise RuntimeError(f"ldapadd failed: {added.stderr[-2000:]}")
    return Directory("127.0.0.1", port, folder), proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
