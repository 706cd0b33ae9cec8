"""The rolling CloudStack upgrade `pulumi up` performs when cloudstackVersion changes: a
Pulumi dynamic resource beside the registration's.

Pulumi pickles the provider into the state: this module's path and the provider's class
name must stay as they are (a moved class leaves every deployed stack unable to load it).

The steps and their order come from components/model/upgrades.py (plan_steps, with the
guides cited there). Each step on an instance runs through SSM Run Command
(AWS-RunShellScript; SendCommand, then GetCommandInvocation until it ends; the instances
run the SSM agent), each CloudStack step through the API. After each step the steps done
are written to an SSM parameter (`state_parameter`), so a `pulumi up` interrupted or failed
half-way continues with the next step: the database snapshot is taken and the database
upgraded once, and no server of another version is ever started beside running ones (the
old ones are stopped and masked before the first new one starts). The resource's `version`
output, which the stack records, changes only when every step is done.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import pulumi
import pulumi.dynamic as dyn
from botocore.exceptions import BotoCoreError, ClientError

from components.model import naming, upgrades

from .client import LOG, Api, RegistrationError, TransientError, aws_session, connect, probe

#: Resource id of the (one) upgrade resource of a stack.
RESOURCE_ID = "cloudstack-upgrade"
#: Defaults (seconds) for what the upgrade waits on; props["upgrade_timeouts"] overrides them
#: (the program sets "template" and "system_vms" from systemVmWaitMinutes).
TIMEOUTS = {"command": 3600.0, "version": 3600.0, "host": 1800.0, "template": 3600.0, "system_vms": 3600.0,
            "snapshot": 7200.0, "poll": 15.0}


class UpgradeError(RegistrationError):
    """An upgrade step failed: the message names the step, the instance and the error."""


class Upgrade:
    """One run of the upgrade from `installed` to `requested` (props: see CloudStackUpgradeArgs)."""

    def __init__(self, props: Mapping[str, Any], installed: str, sleep: Callable[[float], None] = time.sleep):
        self.props, self.installed, self.requested = props, installed, props["to_version"]
        self.timeouts = {**TIMEOUTS, **(props.get("upgrade_timeouts") or {})}
        session = aws_session(props.get("aws"), props["region"])
        self.ssm = session.client("ssm", region_name=props["region"])
        self.rds = session.client("rds", region_name=props["region"])
        self.sleep = sleep
        self._api: Api | None = None
        #: The exact cloudstack-management version the first server installed in this upgrade
        #: (its record's `package`): what every later step installs.
        self.package = ""

    # -- the record of the steps done ------------------------------------------------------------
    def progress(self) -> upgrades.Progress | None:
        """The record of the last upgrade's progress (None: no record): `state_parameter`, else
        the name used before (naming.LEGACY_CLOUDSTACK_UPGRADE), where an upgrade under way when
        the program changed keeps it until its next step."""
        for name in _record_names(self.props["state_parameter"]):
            try:
                value = self.ssm.get_parameter(Name=name)["Parameter"]["Value"]
            except self.ssm.exceptions.ParameterNotFound:
                continue
            try:
                return upgrades.Progress.parse(value)
            except ValueError as e:
                raise UpgradeError(f"SSM parameter {name}: {e}; delete it (aws ssm delete-parameter --name {name}) "
                                   f"only if no upgrade is under way") from None
        return None

    def clear(self) -> None:
        """The record deleted, under either name."""
        _delete_records(self.ssm, self.props["state_parameter"])

    def settle(self) -> None:
        """Before anything changes: raises UpgradeError when the record holds an unfinished upgrade
        from the installed version to another than `to_version` that stopped a server
        (upgrades.check_progress: the way on is named); clears the record of one abandoned
        before any server stopped (upgrades.abandoned), starting nothing."""
        progress = self.progress()
        problem = upgrades.check_progress(progress, self.installed, self.requested, self.props["snapshot_prefix"],
                                          self.props["state_parameter"], self.props["db_instance"])
        if problem is not None:
            raise UpgradeError(str(problem))
        if upgrades.abandoned(progress, self.installed, self.requested):
            LOG.info("upgrade %s -> %s abandoned before any server stopped: its record cleared",
                     progress.installed, progress.target)
            self.clear()

    def _load_done(self) -> set[str]:
        self.settle()
        progress = self.progress()
        if progress is None or (progress.installed, progress.target) != (self.installed, self.requested):
            return set()   # a record of another upgrade (that one completed)
        self.package = progress.package
        return set(progress.done)

    def _save_done(self, done: set[str], running: str = "") -> None:
        record = upgrades.Progress(self.installed, self.requested, frozenset(done), running, self.package)
        self.ssm.put_parameter(Name=self.props["state_parameter"], Value=record.text(), Type="String",
                               Overwrite=True)

    def run(self) -> list[str]:
        """Every step not recorded as done, in order; returns all steps ("key: what")."""
        steps = _plan(self.props, self.installed)
        done = self._load_done()
        if not done and self._already_there():
            LOG.info("upgrade %s -> %s: every server and host runs it already", self.installed, self.requested)
            return []
        if "snapshot" not in done:
            self._snapshot_found()   # its name free or ours, before any server stops
        for step in steps:
            if step.key in done:
                LOG.info("upgrade %s -> %s: %s done already", self.installed, self.requested, step.key)
                continue
            LOG.info("upgrade %s -> %s: %s (%s)", self.installed, self.requested, step.key, step.what)
            if step.action in ("server", "agent") and not self.package:
                self.package = self.first_package()   # a record written before it kept the version
            self._save_done(done, running=step.key)
            self._run_step(step)
            done.add(step.key)
            self._save_done(done)
        return [f"{s.key}: {s.what}" for s in steps]

    def _already_there(self) -> bool:
        """Before the first step: True when every server and host already runs the requested
        version (e.g. "4.22" installed 4.22.1.0 and "4.22.1" is asked for). Raises UpgradeError,
        before anything is stopped, when the running version is newer than the one asked for,
        which only the servers know ("4.22" recorded, "4.22.0" asked while 4.22.1.0 runs):
        apt would refuse the downgrade with every server stopped."""
        reported = self._reported()
        if not reported:
            return False
        if upgrades.is_older(self.requested, reported):
            raise UpgradeError(f"cloudstackVersion {self.requested}: the servers run CloudStack {reported}, newer; "
                               f"CloudStack has no downgrade: set cloudstackVersion to {self.installed} or "
                               f"{'.'.join(reported.split('.')[:3])}")
        if not upgrades.version_matches(reported, self.requested):
            return False
        ips = {h["ip"] for h in self.props["hosts"]}
        hosts = [h for h in self.api.list("listHosts", "host", type="Routing") if h.get("ipaddress") in ips]
        return len(hosts) == len(ips) and all(
            upgrades.version_matches(str(h.get("version") or ""), self.requested) for h in hosts)

    def check_running(self) -> None:
        """When this resource is created with nothing to upgrade: raises UpgradeError if the API
        answers with another version than `to_version`. That is a cloud deployed before its
        version was recorded, with cloudstackVersion changed since: recording the new version
        without an upgrade would make every instance created later install it, and a host of
        another version than the servers does not join (userdata/kvm-host.sh). A new stack's
        servers run `to_version`; no answer (the API unreachable) is no objection."""
        reported = self._reported()
        if reported and not upgrades.version_matches(reported, self.requested):
            running = ".".join(reported.split(".")[:3])
            raise UpgradeError(
                f"cloudstackVersion {self.requested}: the servers run CloudStack {reported}, and the stack has no "
                f"record of it (deployed before the version was recorded); nothing was changed. Set "
                f"cloudstackVersion to {running} for one `pulumi up`, which records it, then change it to "
                f"{self.requested}: that update upgrades the cloud")

    def _run_step(self, step: upgrades.Step) -> None:
        if step.instance:
            self.run_command(step)
        if step.action == "snapshot":
            self.snapshot()
        elif step.action == "first":
            self.wait_version()
            self.package = self.first_package()
        elif step.action == "agent":
            self.wait_host(step.instance)
        elif step.action == "template":
            self.wait_template()
        elif step.action == "system-vms":
            self.recreate_system_vms()
        elif step.action == "routers":
            self.restart_routers()

    # -- AWS -------------------------------------------------------------------------------------
    def snapshot(self) -> None:
        """A manual RDS snapshot named after both versions (kept: manual snapshots outlive the
        instance), waited for until available (CreateDBSnapshot, DescribeDBSnapshots)."""
        name = upgrades.snapshot_name(self.installed, self.requested, self.props["snapshot_prefix"])
        db = self.props["db_instance"]
        if not self._snapshot_found():
            self.rds.create_db_snapshot(DBSnapshotIdentifier=name, DBInstanceIdentifier=db)

        def available() -> bool:
            status = self.rds.describe_db_snapshots(DBSnapshotIdentifier=name)["DBSnapshots"][0]["Status"]
            if status == "failed":
                raise UpgradeError(f"upgrade to {self.requested}: step snapshot: RDS snapshot {name} of {db} "
                                   f"failed; delete it (aws rds delete-db-snapshot --db-snapshot-identifier {name}) "
                                   f"and run `pulumi up` again: it takes it again, the servers still stopped")
            return status == "available"

        self._until(f"RDS snapshot {name} available", self.timeouts["snapshot"], available)

    def _snapshot_found(self) -> bool:
        """Whether this upgrade's snapshot exists (taken by an earlier, interrupted run). Raises
        UpgradeError when a snapshot of that name is of another DB instance: identifiers are
        unique per account and region, not per database (CreateDBSnapshot,
        DBSnapshotAlreadyExists), and a stack of the same name elsewhere in the account (or
        "dev_1" beside "dev-1") may hold it; taking it for ours would leave this cloud without
        its way back."""
        name = upgrades.snapshot_name(self.installed, self.requested, self.props["snapshot_prefix"])
        db = self.props["db_instance"]
        try:
            found = self.rds.describe_db_snapshots(DBSnapshotIdentifier=name)["DBSnapshots"][0]
        except self.rds.exceptions.DBSnapshotNotFoundFault:
            return False
        if found.get("DBInstanceIdentifier") != db:
            raise UpgradeError(
                f"upgrade to {self.requested}: step snapshot: the RDS snapshot {name} exists already and is of "
                f"the DB instance {found.get('DBInstanceIdentifier')}, not of this stack's {db}. Rename or delete "
                f"that snapshot (aws rds delete-db-snapshot --db-snapshot-identifier {name}) if it is no longer "
                f"needed, then run `pulumi up` again")
        return True

    def first_package(self) -> str:
        """The exact cloudstack-management version ("4.22.1.0") the first management server
        runs, which its step installed: asked of the server itself through SSM (the command's
        output), so it needs no read of what the server published. Raises UpgradeError when the
        answer is not a package version of `to_version`."""
        query = upgrades.package_query(self.props["management_ids"][0])
        output = self.run_command(query).get("StandardOutputContent") or ""
        try:
            return upgrades.installed_package(output, self.requested)
        except ValueError as e:
            raise UpgradeError(f"upgrade to {self.requested}: {query.key} on instance {query.instance}: {e}; "
                               f"run `pulumi up` again once the first server runs {self.requested}") from None

    def run_command(self, step: upgrades.Step) -> dict[str, Any]:
        """The step's script on its instance through SSM Run Command; a failure names the step,
        the instance and the command's own error output. Returns GetCommandInvocation's answer."""
        script = upgrades.step_script(step, self.requested, self.package)
        try:
            sent = self.ssm.send_command(
                InstanceIds=[step.instance], DocumentName="AWS-RunShellScript",
                Comment=f"cloudstack-ec2 upgrade {step.key}"[:100],
                Parameters={"commands": [upgrades.run_command(script)],
                            "executionTimeout": [str(int(self.timeouts["command"]))]},
                TimeoutSeconds=600)
        except ClientError as e:
            # SendCommand's InvalidInstanceId: the instance is stopped, or its SSM agent is not
            # online (not registered, no route to SSM, no instance profile) (SSM API reference).
            error = e.response.get("Error", {})
            raise UpgradeError(
                f"upgrade to {self.requested}: step {step.key} could not be sent to instance {step.instance} "
                f"({error.get('Code')}: {error.get('Message')}); the instance must be running with its SSM agent "
                f"online (Systems Manager, Fleet Manager); then run `pulumi up` again: it continues with this "
                f"step") from None
        command_id = sent["Command"]["CommandId"]
        result: dict[str, Any] = {}

        def finished() -> bool:
            nonlocal result
            try:
                result = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=step.instance)
            except self.ssm.exceptions.InvocationDoesNotExist:
                return False   # not registered yet (GetCommandInvocation right after SendCommand)
            # GetCommandInvocation's Status: Delayed is retried by SSM; Cancelling is on its way to Cancelled.
            return result["Status"] not in ("Pending", "InProgress", "Delayed", "Cancelling")

        self._until(f"step {step.key} on {step.instance}", self.timeouts["command"] + 600, finished)
        if result["Status"] != "Success":
            # The script writes to stderr only the failed command and the end of its log
            # (upgrades._PROLOGUE): its beginning names the command.
            error = (result.get("StandardErrorContent") or result.get("StatusDetails") or "").strip()[:4000]
            raise UpgradeError(f"upgrade to {self.requested}: step {step.key} failed on instance {step.instance} "
                               f"({result['Status']}): {error}; fix the cause and run `pulumi up` again: it "
                               f"continues with this step")
        return result

    # -- CloudStack ------------------------------------------------------------------------------
    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = connect(self.props)
        return self._api

    def _reported(self) -> str:
        """The version the API reports now; "" while no server answers (stopped by this upgrade,
        or starting: connection refused, 503). Never waits: a run resumed with every server
        stopped must go on to start the first, not wait for the API."""
        api = self._api or probe(self.props)
        if api is None:
            return ""
        self._api = api
        try:
            return str(api.call("listCapabilities").get("capability", {}).get("cloudstackversion") or "")
        except TransientError:
            return ""

    def wait_version(self) -> None:
        """The first server is up on the new version: listCapabilities reports it (its start
        upgraded the database schema)."""
        self._until(f"the CloudStack API reporting version {self.requested}", self.timeouts["version"],
                    lambda: upgrades.version_matches(self._reported(), self.requested))

    def wait_host(self, instance: str) -> None:
        """The host's new agent connected: listHosts shows it Up with the new version."""
        ip = next(h["ip"] for h in self.props["hosts"] if h["instance"] == instance)

        def up() -> bool:
            hosts = [h for h in self.api.list("listHosts", "host", type="Routing") if h.get("ipaddress") == ip]
            return bool(hosts) and hosts[0].get("state") == "Up" and \
                upgrades.version_matches(str(hosts[0].get("version") or ""), self.requested)

        self._until(f"host {ip} ({instance}) Up with version {self.requested}", self.timeouts["host"], up)

    def _system_templates(self) -> list[dict[str, Any]]:
        return self.api.list("listTemplates", "template", templatefilter="all", templatetype="SYSTEM",
                             hypervisor="KVM", listall=True)

    def _new_template(self) -> str:
        """The name of the new release's KVM system VM template once Ready ("" before)."""
        release = ".".join(self.requested.split(".")[:2])
        return next((str(t["name"]) for t in self._system_templates()
                     if t.get("isready") and f"-{release}." in str(t.get("name"))), "")

    def wait_template(self) -> None:
        """The new release's KVM system VM template, which the upgraded server registers from its
        package (upgrading/index.rst, since 4.16), is Ready (known failures: apache/cloudstack
        12042, 12077, 12934): recreating the system VMs before would leave them on the old one."""
        release = ".".join(self.requested.split(".")[:2])

        def ready() -> bool:
            return bool(self._new_template())

        try:
            self._until(f"the KVM system VM template of {release} Ready", self.timeouts["template"], ready)
        except UpgradeError as e:
            found = ", ".join(f"{t.get('name')}: {t.get('status')}" for t in self._system_templates()) or "none"
            raise UpgradeError(f"{e} (system VM templates: {found}); see the management server log, "
                               f"'SystemVmTemplateRegistration'") from None

    def recreate_system_vms(self) -> None:
        """The secondary storage VM and the console proxy not on the new template (listSystemVms
        templatename) destroyed; CloudStack recreates them on it (_sysvm_restart.rst: restart or
        recreate the system VMs). Those on it already (a resumed run; a patch release without a
        new template) keep running: consoles and transfers are not interrupted again."""
        template = self._new_template()
        old = {v["id"] for v in self.api.list("listSystemVms", "systemvm")
               if not template or v.get("templatename") != template}
        for vm_id in sorted(old):
            self.api.job("destroySystemVm", id=vm_id)

        def replaced() -> bool:
            vms = self.api.list("listSystemVms", "systemvm")
            types = {v.get("systemvmtype") for v in vms if v["id"] not in old and v.get("state") == "Running"}
            return {"secondarystoragevm", "consoleproxy"} <= types

        self._until("a new secondary storage VM and console proxy Running", self.timeouts["system_vms"], replaced)

    def restart_routers(self) -> None:
        """Every virtual router CloudStack marks `requiresupgrade` restarted on the new template:
        its network (or VPC) restarted with cleanup (_sysvm_restart.rst; tenants' networks lose
        their router for a minute or two). CloudStack sets the mark when a router's template is
        older than minreq.sysvmtemplate.version, which the upgraded server sets to the template it
        registers (SystemVmTemplateRegistration; RouterJoinDaoImpl.newDomainRouterResponse): a
        router already restarted (a resumed run) or a patch release without a new template
        leaves its tenants' network untouched."""
        networks, vpcs = set(), set()
        for router in self.api.list("listRouters", "router", listall=True):
            if not router.get("requiresupgrade"):
                continue
            if router.get("vpcid"):
                vpcs.add(router["vpcid"])
            elif router.get("guestnetworkid"):
                networks.add(router["guestnetworkid"])
        for network in sorted(networks):
            self.api.job("restartNetwork", id=network, cleanup=True)
        for vpc in sorted(vpcs):
            self.api.job("restartVPC", id=vpc, cleanup=True)

    def _until(self, what: str, seconds: float, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() > deadline:
                raise UpgradeError(f"upgrade to {self.requested}: gave up waiting for {what} after {seconds:g}s; "
                                   f"run `pulumi up` again to continue")
            self.sleep(self.timeouts["poll"])


class CloudStackUpgradeProvider(dyn.ResourceProvider):
    """create: records the version (nothing to upgrade on a new stack); update: upgrades from the
    version of the state to `to_version`. Its outputs: `version`, the version every instance runs."""

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        props = _clean(props)
        installed = props.get("from_version") or ""
        if not upgrades.is_change(installed, props["to_version"]):
            Upgrade(props, installed).check_running()
        return dyn.CreateResult(RESOURCE_ID, self._outs(props, _upgrade(props, installed)))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        olds, news = _clean(olds), _clean(news)
        changed = olds.get("version") != news.get("to_version") or any(
            olds.get(k) != news.get(k) for k in news if k not in ("to_version", "version", "steps"))
        # The version set back after a failed upgrade is no change of the inputs, yet its record
        # must be settled (Upgrade.settle): an update, which refuses or clears it.
        return dyn.DiffResult(changes=changed or _unsettled(news, olds.get("version") or ""), replaces=[], stables=[],
                              delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        news = _clean(news)
        return dyn.UpdateResult(self._outs(news, _upgrade(news, _clean(olds).get("version") or "")))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """The software stays as it is; the record of an upgrade's steps goes."""
        props = _clean(props)
        ssm = aws_session(props.get("aws"), props["region"]).client("ssm", region_name=props["region"])
        _delete_records(ssm, props["state_parameter"])

    @staticmethod
    def _outs(props: Mapping[str, Any], steps: list[str]) -> dict[str, Any]:
        return {**props, "version": props["to_version"], "steps": steps}


def _clean(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k != "__provider"}


def _plan(props: Mapping[str, Any], installed: str) -> list[upgrades.Step]:
    return upgrades.plan_steps(installed, props["to_version"], list(props["management_ids"]),
                               [h["instance"] for h in props["hosts"]], props["snapshot_prefix"])


def planned_steps(props: Mapping[str, Any]) -> list[str]:
    """The steps ("key: what") an update with these inputs takes, from their from_version (the
    recorded version; what the offline plan and the docs show); [] when nothing changes."""
    installed = props.get("from_version") or ""
    if not upgrades.is_change(installed, props["to_version"]):
        return []
    return [f"{s.key}: {s.what}" for s in _plan(props, installed)]


def _record_names(state_parameter: str) -> list[str]:
    """The progress record's name and, beside it, the name stacks used before (naming.py)."""
    root, _, _ = state_parameter.rpartition("/" + naming.CLOUDSTACK_UPGRADE)
    return [state_parameter, f"{root}/{naming.LEGACY_CLOUDSTACK_UPGRADE}"] if root else [state_parameter]


def _delete_records(ssm: Any, state_parameter: str) -> None:
    for name in _record_names(state_parameter):
        try:
            ssm.delete_parameter(Name=name)
        except ssm.exceptions.ParameterNotFound:
            pass


def _unsettled(props: Mapping[str, Any], installed: str) -> bool:
    """Whether, with `to_version` the recorded `installed`, the progress record holds an
    unfinished upgrade to another version (upgrades.check_progress, upgrades.abandoned).
    False when the record cannot be read (a preview under a role without ssm:GetParameter,
    docs/ci/preview-role-policy.json): the program's own check of the record refuses first."""
    if not installed or upgrades.is_change(installed, props.get("to_version") or "") or \
            not isinstance(props.get("state_parameter"), str):
        return False   # an upgrade (its run settles the record), or a new stack (no record)
    try:
        progress = Upgrade(props, installed).progress()
    except (ClientError, BotoCoreError) as e:
        LOG.info("the upgrade's record %s cannot be read (%s): no change assumed", props["state_parameter"], e)
        return False
    return upgrades.unfinished(progress, installed, props["to_version"])


def _upgrade(props: Mapping[str, Any], installed: str) -> list[str]:
    """Run the upgrade from `installed` when it is another version (nothing when "": a new
    stack); with the same version, settle the record of an unfinished one (Upgrade.settle)."""
    if not upgrades.is_change(installed, props["to_version"]):
        if installed:
            Upgrade(props, installed).settle()
        return []
    problem = upgrades.check_version_change(installed, props["to_version"])
    if problem is not None:
        raise UpgradeError(str(problem))
    return Upgrade(props, installed).run()


#: The upgrade resource's type token (dyn.Resource's module and name).
TYPE = "pulumi-python:dynamic/cloudstack:Upgrade"


class CloudStackUpgrade(dyn.Resource, module="cloudstack", name="Upgrade"):
    """The upgrade resource (type token TYPE)."""

    version: pulumi.Output[str]

    def __init__(self, name: str, props: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(CloudStackUpgradeProvider(), name, {**props, "version": None, "steps": None}, opts)
