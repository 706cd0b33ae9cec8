"""Which changes of `cloudstackVersion` a deployed stack accepts: the upgrade paths of
CloudStack's upgrade guides, never a downgrade.

Pure module (no Pulumi import). The stack records the installed version in its
`deployment` output (components/model/deployed.py); `check_version_change` compares the
requested version with it before anything is declared.

Sources:
- Each release's upgrading guide (apache/cloudstack-documentation,
  source/upgrading/index.rst of the release's branch) lists `upgrade/upgrade-<from>.rst` for
  every release back to 4.3: 4.20, 4.21 and 4.22 document an upgrade from 4.19.x and every
  later release. For 4.23.0.0 (a regular release, apache/cloudstack tag 4.23.0.0) only the
  step from 4.22.x was checked (its guide `upgrade-4.23.rst` and the release's notes):
  older stacks upgrade to 4.22 first.
- CloudStack has no downgrade: the first server of a new version upgrades the database
  schema at its start (engine/schema DatabaseUpgradeChecker), and an older server refuses
  a newer schema. Going back is restoring the snapshot taken before the upgrade.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional, Sequence

from components.model.settings import Problem
from components.model.settings.cloudstack import parse_version

KEY = "cloudstackVersion"

#: Target release -> the oldest release (of those this program installs) its upgrade
#: guide documents as a starting point.
DOCUMENTED_FROM = {
    "4.19": "4.19",
    "4.20": "4.19",
    "4.21": "4.19",
    "4.22": "4.19",
    "4.23": "4.22",
}


def _release(version: str) -> tuple[int, int]:
    parsed = parse_version(version)
    if parsed is None:
        raise ValueError(f"not a CloudStack version: {version!r}")
    return parsed[0], parsed[1]


def _text(release: tuple[int, int]) -> str:
    return f"{release[0]}.{release[1]}"


def is_change(installed: str, requested: str) -> bool:
    """True when `requested` asks for another version than the recorded `installed` one
    ("" installed: not recorded, nothing to change). "X.Y" and "X.Y.Z" are different
    requests: "4.22" is the newest 4.22 patch release, "4.22.1" exactly that one."""
    return bool(installed) and installed != requested


def check_version_change(installed: str, requested: str) -> Optional[Problem]:
    """The problem with moving a stack from `installed` (as recorded, "X.Y" or "X.Y.Z";
    "" when not recorded) to `requested`, or None when the change is an upgrade the guides
    document (or no change). Names the key, the current and the requested version.

    What only the running servers know is checked by the upgrade itself: "4.22" installed
    (the then newest 4.22.z) and "4.22.1" requested may be a downgrade."""
    if not is_change(installed, requested):
        return None
    old, new = parse_version(installed), parse_version(requested)
    if old is None or new is None:
        return None  # each value's own rule reports it
    old_release, new_release = (old[0], old[1]), (new[0], new[1])
    if new_release < old_release or (new_release == old_release and None not in (old[2], new[2])
                                     and new[2] < old[2]):
        return Problem(KEY, requested, (
            f"the stack runs CloudStack {installed}; {requested} would be a downgrade, which CloudStack "
            f"does not support (its database was upgraded by {installed}): keep {installed} or a newer "
            "release; to go back, restore the database snapshot the upgrade took (README 'Upgrading "
            "CloudStack')"))
    oldest = DOCUMENTED_FROM.get(_text(new_release))
    if new_release != old_release and (oldest is None or old_release < _release(oldest)):
        step = max((t for t, f in DOCUMENTED_FROM.items() if _release(f) <= old_release
                    and _release(t) < new_release), key=_release, default=None)
        return Problem(KEY, requested, (
            f"the stack runs CloudStack {installed}; CloudStack's upgrade guide for {_text(new_release)} "
            f"documents upgrades from {oldest or 'no release this program installs'} on, not from "
            f"{_text(old_release)}: upgrade to {step or 'a documented release'} first, in its own "
            "update, then to " + requested))
    return None


# -- the rolling upgrade: its steps, in the order of the upgrade guides ----------------------
#
# Documentation upgrade-4.19/4.20/4.22 ("Overview of Upgrade Steps"): Java 17 (4.20+); stop
# every management and usage server; then back up the database, so the backup holds every
# change up to the stop; upgrade and start the first (its
# start upgrades the schema, once: DatabaseUpgradeChecker), check it works; upgrade and start
# the other servers; the hypervisors' agents, one host at a time ("These steps will not affect
# running guests"); then the system VMs and virtual routers (_sysvm_restart.rst). Every server
# runs the exact same version (apache/cloudstack 11973: a server of another version started
# beside running ones upgrades the live database).


@dataclass(frozen=True)
class Step:
    """One step of an upgrade. `key` is stable (what an interrupted run records as done);
    `instance` the EC2 instance it runs on ("" for a step through the AWS or CloudStack API)."""

    key: str
    action: str
    instance: str = ""
    what: str = ""


#: Java 17 for CloudStack 4.20 and later (upgrading/_java_version.rst, upgrade_java_17_notes.rst).
JAVA_17_FROM = (4, 20)


def needs_java_17(requested: str) -> bool:
    return _release(requested) >= JAVA_17_FROM


def plan_steps(installed: str, requested: str, management_ids: Sequence[str],
               host_ids: Sequence[str], snapshot_prefix: str = "cloudstack") -> list[Step]:
    """The steps that take every management server (`management_ids`, the first is upgraded
    first) and KVM host (`host_ids`, one at a time) from `installed` to `requested`."""
    if not management_ids:
        raise ValueError("an upgrade needs at least one management server")
    steps: list[Step] = []
    if needs_java_17(requested):
        steps += [Step(f"java:{i}", "java", i, "Java 17 as the default java")
                  for i in (*management_ids, *host_ids)]
    steps += [Step(f"stop:{i}", "stop", i, "stop the management (and usage) server") for i in management_ids]
    steps.append(Step("snapshot", "snapshot",
                      what=f"RDS snapshot {snapshot_name(installed, requested, snapshot_prefix)}, every server stopped"))
    first, *others = management_ids
    steps.append(Step(f"first:{first}", "first", first,
                      f"upgrade to {requested} and start; the database upgrade runs here, once"))
    steps += [Step(f"server:{i}", "server", i, f"upgrade to {requested} and start") for i in others]
    steps += [Step(f"agent:{i}", "agent", i, f"agent {requested}, VMs left running") for i in host_ids]
    steps += [Step("template", "template", what=f"the {_text(_release(requested))} system VM template Ready"),
              Step("system-vms", "system-vms", what="secondary storage VM and console proxy recreated"),
              Step("routers", "routers", what="virtual routers restarted on the new template")]
    return steps


# -- the record of an upgrade's progress, and what another cloudstackVersion does to it ----------
#
# upgrade-4.22.rst, "Database Preparation": the backup taken with every server stopped is what
# "restoring your existing environment" needs when an upgrade has to be rolled back; CloudStack
# has no other way back (an older server refuses the upgraded schema: DatabaseUpgradeChecker).

#: The actions in the order plan_steps runs them (what "the step reached" sorts by).
ACTION_ORDER = ("java", "stop", "snapshot", "first", "server", "agent", "template", "system-vms", "routers")


@dataclass(frozen=True)
class Progress:
    """The record of an upgrade's progress: the SSM parameter `<parameter root>/upgrade/progress`,
    JSON {"from": installed, "to": target, "done": [step keys], "running": the step key started
    and not yet recorded as done, or "", "package": the exact cloudstack-management package
    version the first server installed ("4.22.1.0"), or "" before its step is done}. `running`
    is written before a step starts, so a run interrupted inside a step (a server stopped, the
    record not yet saying so) is known; `package` is what every later step installs, however
    long after (a resumed run included)."""

    installed: str
    target: str
    done: frozenset[str] = frozenset()
    running: str = ""
    package: str = ""

    @classmethod
    def parse(cls, text: str) -> Optional["Progress"]:
        """The record from its parameter's value; None for "" (no record). Raises ValueError
        naming the value when it is not such a record."""
        if not text:
            return None
        try:
            record = json.loads(text)
            return cls(str(record["from"]), str(record["to"]), frozenset(record.get("done") or ()),
                       str(record.get("running") or ""), str(record.get("package") or ""))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ValueError(f"not a record of an upgrade's progress: {text[:200]!r}") from None

    def text(self) -> str:
        record = {"from": self.installed, "to": self.target, "done": sorted(self.done)}
        optional = {"running": self.running, "package": self.package}
        return json.dumps({**record, **{k: v for k, v in optional.items() if v}})

    def _touched(self) -> list[str]:
        return [k for k in (*self.done, self.running) if k]

    def servers_stopped(self) -> bool:
        """Whether a management server may have been stopped (and masked): any step past Java 17
        done or started."""
        return any(k.split(":")[0] != "java" for k in self._touched())

    def database_upgraded(self) -> bool:
        """Whether the first server of the target version may have started on the database (its
        start upgrades the schema)."""
        return any(k.split(":")[0] in ACTION_ORDER[ACTION_ORDER.index("first"):] for k in self._touched())

    def reached(self) -> str:
        """The furthest step done or started, e.g. "first:i-0abc (started, unfinished)"."""
        key = max(self._touched(), key=lambda k: (ACTION_ORDER.index(k.split(":")[0]), k == self.running))
        return f"{key} (started, unfinished)" if key == self.running else key


def unfinished(progress: Optional[Progress], installed: str, requested: str) -> bool:
    """Whether `progress` records an upgrade from the recorded `installed` version to another
    than `requested` (cloudstackVersion) that has not completed (a completed one changed the
    recorded version)."""
    return progress is not None and progress.installed == installed and progress.target != requested


def abandoned(progress: Optional[Progress], installed: str, requested: str) -> bool:
    """True when `progress` records an upgrade from `installed` to another version than
    `requested` that stopped before any server did (Java 17 at most): the record is stale and
    is cleared; nothing is started, for nothing was stopped."""
    return unfinished(progress, installed, requested) and not progress.servers_stopped()


def check_progress(progress: Optional[Progress], installed: str, requested: str, snapshot_prefix: str = "cloudstack",
                   record_name: str = "<parameter root>/upgrade/progress", database: str = "<db>") -> Optional[Problem]:
    """The problem with asking for `requested` (cloudstackVersion) while `progress` records an
    unfinished upgrade from the recorded `installed` to another version that stopped a server
    (or upgraded the database): setting `installed` back, or a third version, would leave every
    server stopped and masked and say nothing. None when there is no such record (no record, one
    of a finished upgrade, this very upgrade to resume, or one abandoned before any server
    stopped: `abandoned`). The problem names the key, both versions, the step reached, the
    snapshot and the two ways on: finish the upgrade, or roll back (upgrade-4.22.rst, "Database
    Preparation"; README "Upgrading CloudStack", "Rolling back"). `record_name`: the progress
    parameter's name, which the rollback deletes once done; `database`: the RDS instance's
    identifier."""
    if not unfinished(progress, installed, requested) or not progress.servers_stopped():
        return None
    target, snapshot = progress.target, snapshot_name(installed, progress.target, snapshot_prefix)
    kept = f"{database}-{target.replace('.', '-')}"
    asked = f"setting {installed} back" if requested == installed else f"another version ({requested})"
    if progress.database_upgraded():
        state = (f"the management servers were stopped and masked and the database may have been upgraded by "
                 f"{target} (CloudStack has no downgrade)")
        back = (f"restore the RDS snapshot {snapshot}, taken with every server stopped, under the database's own "
                f"identifier (the upgraded one renamed and kept: aws rds modify-db-instance "
                f"--db-instance-identifier {database} --new-db-instance-identifier {kept} "
                f"--apply-immediately; then aws rds restore-db-instance-from-db-snapshot --db-snapshot-identifier "
                f"{snapshot} --db-instance-identifier {database} with its subnet group, parameter group and security "
                f"group), reinstall {installed} on every server and host")
    else:
        state = "the management servers were stopped and masked; the database is still the one of " + installed
        back = f"the database needs no restore (the snapshot {snapshot}, if taken, is the way back all the same)"
    return Problem(KEY, requested, (
        f"the upgrade {installed} -> {target} is unfinished: it reached step {progress.reached()}, so {state}. "
        f"{asked[0].upper()}{asked[1:]} would start nothing and leave them so: nothing was changed. Either finish "
        f"the upgrade: set {KEY} to {target} and run `pulumi up` (it continues where it stopped); or roll back as "
        f"CloudStack's upgrade guide describes (README 'Upgrading CloudStack', 'Rolling back'): {back}, unmask and "
        f"start each server (systemctl unmask cloudstack-management.service; systemctl start "
        f"cloudstack-ec2-boot.service), then delete the record (aws ssm delete-parameter --name {record_name}) and "
        f"keep {KEY} {installed}"))


def progress_warning(progress: Optional[Progress], installed: str, requested: str) -> Optional[str]:
    """What an update that keeps (or sets back) `requested` says of an upgrade abandoned before
    any server stopped (`abandoned`): its record is cleared, nothing is started."""
    if not abandoned(progress, installed, requested):
        return None
    return (f"the upgrade of CloudStack {installed} -> {progress.target} stopped before any management server did "
            f"(it reached step {progress.reached()}); with {KEY} {requested} this update clears its record and "
            "starts nothing: every server and host keeps running " + installed + " (Java 17 stays the default "
            "java where that step ran)")


def snapshot_prefix(stack: str) -> str:
    """The prefix of a stack's upgrade snapshots: "cloudstack" and the stack name's letters and
    digits, hyphen-separated (RDS identifiers allow no other characters)."""
    return "-".join(["cloudstack", *re.findall(r"[a-z0-9]+", stack.lower())])


def snapshot_name(installed: str, requested: str, prefix: str = "cloudstack") -> str:
    """The manual RDS snapshot taken before an upgrade, named after both versions: letters,
    digits and single hyphens (RDS CreateDBSnapshot's DBSnapshotIdentifier)."""
    return f"{prefix}-{installed}-to-{requested}".replace(".", "-")


def version_matches(reported: str, requested: str) -> bool:
    """Whether a version CloudStack reports ("4.22.1.0"; listCapabilities cloudstackversion,
    listHosts version) is the requested one ("4.22": any 4.22 release; "4.22.1": 4.22.1.*)."""
    return reported == requested or reported.startswith(requested + ".")


def is_older(requested: str, reported: str) -> bool:
    """Whether the requested version ("X.Y" or "X.Y.Z") is older than one CloudStack reports
    ("4.22.1.0"): "4.22.0" is older than 4.22.1.0; "4.22" (its newest patch) never is."""
    parts = [int(p) for p in reported.split(".")[:3] if p.isdigit()]
    asked = [int(p) for p in requested.split(".")]
    return asked < parts[:len(asked)]


def _apt_pin(package: str, requested: str) -> str:
    # "X.Y" installs the newest X.Y.z; "X.Y.Z" exactly that patch release (as the boot scripts).
    return f"{package}={requested}*" if requested.count(".") == 2 else package


#: Written into every step script: settings and the package repository list of the boot scripts.
_BOOT_ENV = "/etc/cloudstack-ec2/boot.env"
_REPO_LIST = "/etc/apt/sources.list.d/cloudstack.list"
_APT = "apt-get -q -y -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold"
#: upgrade_java_17_notes.rst: JAVA_OPTS of /etc/default/cloudstack-{management,usage,agent} must
#: carry these from 4.20 on; a conffile changed locally keeps its old text on upgrade.
JAVA_17_OPTIONS = "--add-opens=java.base/java.lang=ALL-UNNAMED --add-exports=java.base/sun.security.x509=ALL-UNNAMED"


def _packages(requested: str, packages: Sequence[str], check: Sequence[str] = ()) -> list[str]:
    # `packages`: apt-get install's arguments (NAME, NAME=VERSION*, NAME=VERSION); `check`:
    # lines run once the repository's index is fresh, before the install.
    release = _text(_release(requested))
    return [
        "export DEBIAN_FRONTEND=noninteractive",
        f"sed -i -E 's|^(deb .* )[0-9]+\\.[0-9]+$|\\1{release}|' {_REPO_LIST}",
        f"apt-get -q -o DPkg::Lock::Timeout=600 update",
        *check,
        f"{_APT} install {' '.join(packages)}",
    ]


#: A Debian package version as the boot scripts accept one (management-server.sh
#: publish_version, kvm-host.sh install_packages). It is written into step scripts: nothing
#: else may pass.
_PACKAGE_VERSION = re.compile(r"[0-9][A-Za-z0-9.+:~-]*")
#: The action of the query of the package version the first server installed: no step of the
#: plan (it changes nothing, and is not recorded as done).
PACKAGE_QUERY = "package"


def package_query(first: str) -> Step:
    """The query, on the first management server `first`, of the exact cloudstack-management
    version it installed (its step_script prints it, alone, on the command's output)."""
    return Step(f"{PACKAGE_QUERY}:{first}", PACKAGE_QUERY, first, "the installed cloudstack-management version")


def installed_package(output: str, requested: str) -> str:
    """The exact package version ("4.22.1.0") in the output of package_query's script. Raises
    ValueError naming the output when it is not a package version of `requested` ("X.Y" or
    "X.Y.Z")."""
    version = output.strip()
    if not _PACKAGE_VERSION.fullmatch(version) or not version_matches(version, requested):
        raise ValueError(f"the first management server reports cloudstack-management {version[:100]!r} installed; "
                         f"expected a package version of CloudStack {requested}")
    return version


def _same_package(package: str) -> list[str]:
    """A server step's check that `package`, the first server's exact version, is installed or
    installable: upstream's index may list only the newest patch release of a series, and the
    deployment keeps no copy of cloudstack-management (README, "Upgrading CloudStack").
    apt-cache(8) `show NAME=VERSION` prints nothing when the index lacks that version."""
    installed = "dpkg-query -W -f='${Status} ${Version}' cloudstack-management 2>/dev/null"
    gone = (f"cloudstack-management {package}, the version the first management server installed in this "
            f"upgrade, is neither installed here nor in the CloudStack repository any more, and the deployment keeps "
            f"no copy of it; every server must run that very version (a newer one beside it would upgrade the "
            f"database beneath it): install cloudstack-common and cloudstack-management {package} on this server "
            f"from their .deb files (/var/cache/apt/archives on the first server keeps those it installed), then run "
            f"`pulumi up` again: it continues with this step")
    return [f"[ \"$({installed})\" = \"install ok installed {package}\" ] || "
            f"[ -n \"$(apt-cache show cloudstack-management={package} 2>/dev/null)\" ] || "
            f"{{ failed='{gone}'; exit 1; }}"]


def _agent_is(package: str) -> list[str]:
    """An agent step's check, after the host's boot script installed the version the first
    server published (its cloudstack-version parameter), that it is the upgrade's `package`."""
    return ["agent=$(dpkg-query -W -f='${Version}' cloudstack-agent)",
            f"[ \"$agent\" = \"{package}\" ] || {{ failed=\"cloudstack-agent $agent installed, not {package}, "
            f"the version the first management server installed in this upgrade: its cloudstack-version parameter "
            f"names another version now\"; exit 1; }}"]


def _java_options(requested: str, defaults: Sequence[str]) -> list[str]:
    if not needs_java_17(requested):
        return []
    return [f"[ ! -f {f} ] || grep -q -- '--add-opens=java.base/java.lang=' {f} || "
            f"sed -i 's|^JAVA_OPTS=\"|JAVA_OPTS=\"{JAVA_17_OPTIONS} |' {f}" for f in defaults]


def _boot_version(requested: str) -> str:
    # A boot script's run (every boot, and the re-run of a step) installs the version boot.env names.
    return f"sed -i 's|^CSEC2_CLOUDSTACK_VERSION=.*|CSEC2_CLOUDSTACK_VERSION=\"{requested}\"|' {_BOOT_ENV}"


#: The boot script's log (userdata/common.sh CSEC2_LOG_FILE): its "ERROR in step" line
#: (csec2_die) names what failed; systemctl's own message names only the unit.
_BOOT_LOG = "/var/log/cloudstack-ec2-boot.log"
#: The instance's boot script run again (cloudstack-ec2-boot.service, a oneshot unit: `systemctl
#: start` returns when the script has ended, and fails when it failed; systemd.service(5), Type=).
_BOOT_RERUN = (
    "if ! systemctl start cloudstack-ec2-boot.service; then",
    f"  failed='systemctl start cloudstack-ec2-boot.service'",
    f"  echo \"the boot script failed: $(grep 'ERROR in step' {_BOOT_LOG} | tail -n 1)\"; exit 1",
    "fi",
)


#: The first lines of every step script. GetCommandInvocation returns only the first 8,000
#: characters a command writes to stderr (24,000 of stdout), and apt and dpkg write warnings
#: there long before a failure: the step's whole output goes to a log file on the instance,
#: and a failure writes to stderr only the failed command and the end of that log, so the
#: error reaches the message that names the step (AWS Systems Manager API reference,
#: GetCommandInvocation, StandardErrorContent). File descriptor 4 is the command's own
#: output, for what a step reports (package_query).
_PROLOGUE = (
    "set -euo pipefail",
    'log=$(mktemp -t cloudstack-ec2-upgrade.XXXXXX)',
    'exec 3>&2 4>&1 >>"$log" 2>&1',
    'failed="the script\'s last command"',
    "trap 'failed=\"$BASH_COMMAND (line $LINENO)\"' ERR",
    "csec2_step_end() {",
    "  local rc=$?",
    '  [ "$rc" = 0 ] || { echo "$failed: exit $rc; the end of its output (all of it: $log):"; tail -c 3000 "$log"; } >&3',
    "}",
    "trap csec2_step_end EXIT",
)


def run_command(script: str) -> str:
    """The one command SSM's AWS-RunShellScript runs (as root, with /bin/sh) for a step's bash
    script: bash reads it from a here-document, so `set -o pipefail` and [[ ]] work."""
    return f"bash -s <<'CSEC2_UPGRADE_STEP'\n{script}CSEC2_UPGRADE_STEP\n"


def step_script(step: Step, requested: str, package: str = "") -> str:
    """The shell script (bash) of an instance's step. `package`: the exact cloudstack-management
    version the first server installed (installed_package), which every "server" and "agent"
    step installs; raises ValueError for one of those without it."""
    if step.action in ("server", "agent") and not _PACKAGE_VERSION.fullmatch(package):
        raise ValueError(f"step {step.key} needs the package version the first server installed, not {package!r}")
    if step.action == "java":
        lines = ["export DEBIAN_FRONTEND=noninteractive",
                 f"{_APT} install openjdk-17-jre-headless",
                 "update-alternatives --set java \"$(update-alternatives --list java | grep -m1 java-17)\""]
    elif step.action == PACKAGE_QUERY:
        # dpkg-query(1) --show --showformat: the installed version, alone on the command's output.
        lines = ["dpkg-query -W -f='${Version}\\n' cloudstack-management >&4"]
    elif step.action == "stop":
        # Masked, not only stopped: a reboot's boot script would start the old version beside an
        # upgraded one. The upgrade of this server unmasks it.
        lines = ["systemctl stop cloudstack-management.service cloudstack-usage.service 2>/dev/null || "
                 "systemctl stop cloudstack-management.service",
                 "systemctl mask cloudstack-management.service",
                 "if systemctl is-active --quiet cloudstack-management.service; then",
                 "  echo 'cloudstack-management.service is still running after its stop' >&2; exit 1",
                 "fi"]
    elif step.action in ("first", "server"):
        # The first installs the newest release of `requested`; every other server exactly the
        # first's version, however long after: a newer patch release published meanwhile, started
        # beside the first, would upgrade the database beneath it.
        names = ("cloudstack-management", "cloudstack-common")
        packages = (_packages(requested, [_apt_pin(p, requested) for p in names]) if step.action == "first" else
                    _packages(requested, [f"{p}={package}" for p in names], _same_package(package)))
        # Unmasked right before the package, once it is known to be there: its maintainer scripts
        # may (re)start the service, which a masked unit fails. Only this server is unmasked: the
        # others stay stopped.
        lines = [*packages[:-1], "systemctl unmask cloudstack-management.service", packages[-1]]
        lines += _java_options(requested, ("/etc/default/cloudstack-management", "/etc/default/cloudstack-usage"))
        # The boot script's re-run starts the server; on the first (CSEC2_MANAGEMENT_INDEX 0) it
        # also publishes the version the hosts install and keeps their packages of it in the
        # boot-script bucket (management-server.sh publish_version, publish_packages): every
        # agent step comes after this one (plan_steps).
        lines += [_boot_version(requested), *_BOOT_RERUN,
                  "systemctl is-active --quiet cloudstack-management.service"]
    elif step.action == "agent":
        # Stopping the agent leaves the guests running (the guides' KVM section); CloudStack
        # shows the host Disconnected until the new agent connects. The host's boot script
        # installs the agent as at its first boot (kvm-host.sh install_packages): the exact
        # version the first server published, from the deployment's copy after its
        # `dpkg-deb -f` check, else upstream; neither: its error names the version. Restarted,
        # not started: the package's maintainer scripts may have started it before its Java 17
        # options were in place.
        lines = ["systemctl stop cloudstack-agent.service", _boot_version(requested), *_BOOT_RERUN, *_agent_is(package),
                 *_java_options(requested, ("/etc/default/cloudstack-agent",)),
                 "systemctl restart cloudstack-agent.service"]
    else:
        raise ValueError(f"step {step.key} runs through an API, not on an instance")
    return "\n".join([f"# cloudstack-ec2 upgrade step {step.key}: {step.what}", *_PROLOGUE, *lines]) + "\n"
