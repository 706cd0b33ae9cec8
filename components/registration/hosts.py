"""The KVM hosts of one cluster, as one resource: added concurrently, removed one at a time
through maintenance (no Pulumi here).

Why one resource per cluster: Pulumi's Python dynamic provider host serves at most four
calls at once (`pulumi/dynamic/__main__.py`: `ThreadPoolExecutor(max_workers=4)`), shared by
every dynamic resource; with one blocking resource per host, adding N hosts took about
N/4 addHost times. Here each cluster's resource adds its hosts in parallel threads, so the
cost grows with the number of clusters (≤ 4 at once), not hosts.

The rules followed, from apache/cloudstack:
- `ResourceState` (api/.../resource/ResourceState.java): Disabled has no transition to
  maintenance (enable it first); Degraded and Maintenance can be deleted; the four
  maintenance states can be cancelled (`ResourceState.isMaintenanceState`).
- `ResourceManagerImpl.maintain`: one host per cluster in PrepareForMaintenance or
  ErrorInPrepareForMaintenance at a time, the others refused (530 "There are other servers
  attempting migrations for maintenance"); the prepare job fails when no host can take the
  VMs (the host is left preparing, then ErrorInMaintenance).
- `ResourceManagerImpl.doDeleteHost`: without `forced`, only Maintenance or Degraded; the
  VMs still recorded on the host are marked Stopped, so a host is deleted only once no VM
  runs on it.
- `ResourceManagerImpl.declareHostAsDegraded`: only for an Alert or Disconnected host; HA
  restarts its HA-enabled VMs elsewhere.
- `LibvirtServerDiscoverer.find`: addHost SSHes in, runs cloudstack-setup-agent and waits
  for the agent; it fails ("Cannot find the server resources", "Authentication error") while
  the host is not ready, and a second addHost for an address already in the database fails.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from .base import Kind, Obj, Props, _by, _is_gone, await_created
from .client import (
    CREDENTIAL_ERRORS, LOG, Api, CallTimedOut, CloudStackError, RegistrationError, TransientError, aws_session,
)

#: ResourceState.isMaintenanceState
MAINTENANCE_STATES = ("PrepareForMaintenance", "ErrorInPrepareForMaintenance", "ErrorInMaintenance", "Maintenance")
#: Host statuses (Status.java) of a host whose agent does not answer.
DEAD_STATUSES = ("Down", "Disconnected", "Alert")
#: addHost errors that mean "the host is not ready yet" (LibvirtServerDiscoverer.find returns
#: null or throws DiscoveredWithErrorException while the agent is missing or the key is not
#: authorized); retried within timeouts.host_up.
DISCOVERY_TEXTS = ("cannot find the server resources", "authentication error", "could not add host")
#: At most this many addHost calls under way at once per cluster (each keeps an SSH session
#: and a management server thread busy).
MAX_PARALLEL_ADDS = 16


def host_label(h: Props) -> str:
    return f"host {h.get('ipaddress')}"


def find_host(api: Api, zoneid: str, ip: str) -> Obj | None:
    return _by(api.list("listHosts", "host", zoneid=zoneid, type="Routing"), ipaddress=ip)


def get_host(api: Api, id_: str) -> Obj | None:
    return _by(api.list("listHosts", "host", id=id_), id=id_)


def vms_on(api: Api, host_id: str) -> list[dict[str, str]]:
    """Every VM CloudStack places on the host: user VMs, virtual routers, system VMs."""
    out = []
    for command, key, kind in (("listVirtualMachines", "virtualmachine", "VM"), ("listRouters", "router", "router"),
                               ("listSystemVms", "systemvm", "system VM")):
        extra = {} if command == "listSystemVms" else {"listall": True}
        for v in api.list(command, key, hostid=host_id, **extra):
            out.append({"name": str(v.get("name")), "kind": v.get("systemvmtype") or kind,
                        "state": str(v.get("state"))})
    return out


def describe(vms: list[dict[str, str]]) -> str:
    return ", ".join(f"{v['name']} ({v['kind']}, {v['state']})" for v in vms) or "none listed"


def _job(api: Api, what: str, command: str, **params: Any) -> dict:
    return api.retrying(what, lambda: api.job(command, **params))


def return_to_service(api: Api, host: Obj, label: str) -> Obj:
    """A host in a maintenance state, or Disabled, serves again (cancelHostMaintenance /
    updateHost allocationstate=Enable)."""
    state = host.get("resourcestate")
    if state in MAINTENANCE_STATES:
        LOG.info("%s is in %s: cancelling the maintenance", label, state)
        try:
            _job(api, f"cancel maintenance of {label}", "cancelHostMaintenance", id=host["id"])
        except CloudStackError as e:
            fresh = get_host(api, host["id"]) or {}
            if fresh.get("resourcestate") in MAINTENANCE_STATES:
                raise RegistrationError(f"{label} is in {fresh.get('resourcestate')} and cancelling its maintenance "
                                        f"failed: {e}") from None
    elif state == "Degraded" and host.get("state") == "Up":
        LOG.info("%s is Degraded but its agent is Up again: cancelling the Degraded state", label)
        _job(api, f"return {label} to service", "cancelHostAsDegraded", id=host["id"])
    elif state == "Disabled":
        LOG.info("%s is Disabled: enabling it", label)
        api.retrying(f"enable {label}", lambda: api.call("updateHost", id=host["id"], allocationstate="Enable"))
    else:
        return host
    return get_host(api, host["id"]) or host


def ensure_host(api: Api, props: Props, h: Props) -> Obj:
    """The host registered in the cluster, serving and Up: adopted, or added once it is ready.

    Discovery failures (the agent not installed yet, the key not authorized yet) are retried
    within timeouts.host_up; a timed-out addHost is looked up, never sent twice."""
    t = api.timeouts
    label = host_label(h)
    deadline = time.monotonic() + t.host_up
    last = ""
    while True:
        found = api.retrying(f"look up {label}", lambda: find_host(api, props["zoneid"], h["ipaddress"]))
        if found is not None:
            if found.get("clusterid") != props["clusterid"]:
                raise RegistrationError(
                    f"{label} is registered in cluster {found.get('clustername')} ({found.get('clusterid')}), not "
                    f"in {props['clusterid']}: CloudStack cannot move a host between clusters; put it into "
                    f"maintenance and delete it in CloudStack, then run `pulumi up` again")
            found = return_to_service(api, found, label)
            if found.get("state") == "Up":
                return found
            last = f"it is {found.get('state')}"
        elif props.get("ready_parameter_prefix") and not host_signalled_ready(props, h):
            last = f"it has not signalled readiness yet (SSM parameter {ready_parameter(props, h)})"
        else:
            try:
                r = api.call("addHost", zoneid=props["zoneid"], podid=props["podid"], clusterid=props["clusterid"],
                             hypervisor=props["hypervisor"], url=f"http://{h['ipaddress']}",
                             username=props["username"])
                host = (r.get("host") or [None])[0]
                if host:
                    LOG.info("added %s (id %s)", label, host["id"])
                continue  # re-read: adopt/serve/Up checks
            except CallTimedOut as e:
                await_created(api, label, e, lambda: find_host(api, props["zoneid"], h["ipaddress"]),
                              bound=max(1.0, deadline - time.monotonic()))
                continue
            except TransientError as e:
                last = str(e)
            except CloudStackError as e:
                if not (e.code == 530 and any(m in e.text.lower() for m in DISCOVERY_TEXTS)):
                    raise
                last = e.text
                LOG.info("%s is not ready for addHost yet (%s); retrying within timeouts.host_up", label, e.text)
        if time.monotonic() > deadline:
            raise RegistrationError(
                f"{label} is not Up after {t.host_up:g}s (timeouts.host_up): {last}. Check on the host that its "
                f"boot script finished (journalctl -u cloudstack-ec2-boot; it writes the readiness parameter last), "
                f"that cloudstack-agent is installed and running (/var/log/cloudstack/agent/agent.log) and that "
                f"the host user's authorized_keys has the management server's key")
        api._sleep(t.poll_interval)


def ready_parameter(props: Props, h: Props) -> str:
    return f"{props['ready_parameter_prefix']}/{h['ipaddress']}"


def session_instance(arn: str) -> str:
    """The role session name in an assumed-role ARN (`arn:<partition>:sts::<account>:assumed-role/
    <role>/<session>`), "" for any other principal. For an instance's role the session name is
    the instance id: EC2 assumes the role with it (AWS EC2 User Guide, "IAM roles for Amazon
    EC2"; CloudTrail shows such calls as assumed-role/<role>/i-...)."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        path = parts[5].split("/")
        if len(path) == 3:
            return path[2]
    return ""


def host_signalled_ready(props: Props, h: Props) -> bool:
    """Whether the host's boot script has written its readiness parameter (the last thing
    userdata/kvm-host.sh does: the agent is installed and the management key authorized),
    and, when the host's EC2 instance is known, whether that instance wrote it.

    The hosts share one role that may write every `<prefix>/host-ready/*` name, so the name
    proves nothing: the writer does. GetParameterHistory reports the principal of each
    PutParameter as LastModifiedUser (AWS Systems Manager API Reference, ParameterHistory);
    for a host it is its role session, whose name is its instance id (session_instance).
    Not DescribeParameters: it is best-effort, a page may come back empty with a NextToken
    while the parameter exists (its API reference). A marker another principal wrote
    (another host, a person) is logged and not accepted; so is a replaced instance's
    predecessor's (another instance id)."""
    from botocore.exceptions import BotoCoreError, ClientError

    name = ready_parameter(props, h)
    session = aws_session(props.get("aws"), props["region"])
    try:
        pages = session.client("ssm", region_name=props["region"]).get_paginator("get_parameter_history")
        versions = [v for page in pages.paginate(Name=name) for v in page["Parameters"]]
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in CREDENTIAL_ERRORS:
            raise RegistrationError(f"the AWS credentials of the registration may not read the history of {name} "
                                    f"({code}): it uses the stack's identity (aws:profile, aws:assumeRoles), which "
                                    f"needs ssm:GetParameterHistory") from None
        return False   # ParameterNotFound: not written yet; throttling: ask again
    except BotoCoreError:
        return False
    if not versions:
        return False   # not written yet
    instance = h.get("instance") or ""
    writer = max(versions, key=lambda v: v.get("Version", 0)).get("LastModifiedUser") or ""
    if instance and session_instance(writer) != instance:
        LOG.warning("%s: SSM parameter %s was written by %s, not by the host's instance %s: not accepted, waiting "
                    "for the host's own signal", host_label(h), name, writer or "an unknown principal", instance)
        return False
    return True


def forget_ready(props: Props, ips: list[str]) -> None:
    """Delete the readiness parameters of removed hosts: a new instance with the same address
    must signal again before it is added."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not props.get("ready_parameter_prefix") or not ips:
        return
    names = [ready_parameter(props, {"ipaddress": ip}) for ip in ips]
    try:
        ssm = aws_session(props.get("aws"), props["region"]).client("ssm", region_name=props["region"])
        for i in range(0, len(names), 10):   # DeleteParameters takes at most 10 names
            ssm.delete_parameters(Names=names[i:i + 10])
    except (ClientError, BotoCoreError, RegistrationError) as e:
        LOG.warning("could not delete the readiness parameters %s: %s; delete them by hand (aws ssm "
                    "delete-parameters)", ", ".join(names), e)


def _maintenance_failed(api: Api, host_id: str, label: str, why: str) -> RegistrationError:
    """Every way maintenance can fail ends here: the host serves again, the error names its VMs."""
    fresh = api.retrying(f"read {label}", lambda: get_host(api, host_id)) or {}
    back = "the host is serving again"
    if fresh.get("resourcestate") in MAINTENANCE_STATES:
        try:
            _job(api, f"cancel maintenance of {label}", "cancelHostMaintenance", id=host_id)
        except RegistrationError as e:
            back = f"cancelling its maintenance failed too ({e}); cancel it in CloudStack"
    vms = api.retrying(f"list VMs on {label}", lambda: vms_on(api, host_id))
    return RegistrationError(
        f"not deleting {label} (id {host_id}): {why}. VMs still on it: {describe(vms)}. Nothing was deleted and "
        f"{back}. Make room (another Up host in the cluster, or migrate or stop these VMs), then run `pulumi up` "
        f"again.")


def remove_live_host(api: Api, host: Obj) -> None:
    """Maintenance (the VMs live-migrate away), then deleteHost, never forced."""
    t = api.timeouts
    id_, label = host["id"], host_label(host)
    state = host.get("resourcestate")
    deadline = time.monotonic() + t.maintenance
    if state == "Disabled":  # ResourceState: no AdminAskMaintenance from Disabled
        api.retrying(f"enable {label}", lambda: api.call("updateHost", id=id_, allocationstate="Enable"))
        state = "Enabled"
    if state in ("Enabled", "ErrorInMaintenance"):
        LOG.info("%s: entering maintenance (its VMs live-migrate away)", label)
        try:
            # A ClusterBusy refusal (another host of the cluster is preparing) is retried: waiting
            # for the cluster's turn is bounded by timeouts.maintenance, not the transient budget.
            api.retrying(f"maintenance of {label}",
                         lambda: api.job("prepareHostForMaintenance", id=id_,
                                         bound=max(1.0, deadline - time.monotonic())),
                         budget=max(1.0, deadline - time.monotonic()))
        except RegistrationError as e:
            raise _maintenance_failed(api, id_, label, f"prepareHostForMaintenance failed: {e}") from None
    while True:
        host = api.retrying(f"read {label}", lambda: get_host(api, id_)) or {}
        state = host.get("resourcestate")
        if state in ("Maintenance", "Degraded"):
            break
        if not host:
            LOG.info("%s (id %s) is gone already", label, id_)
            return
        if state == "ErrorInMaintenance":
            raise _maintenance_failed(api, id_, label, "CloudStack could not migrate its VMs (ErrorInMaintenance)")
        if state not in MAINTENANCE_STATES:
            raise _maintenance_failed(api, id_, label, f"it left maintenance ({state}) before it was reached")
        if time.monotonic() > deadline:
            raise _maintenance_failed(api, id_, label, f"it is still {state} after {t.maintenance:g}s "
                                                       f"(timeouts.maintenance)")
        api._sleep(t.poll_interval)
    _delete_host(api, id_, label)


def remove_dead_host(api: Api, host: Obj) -> None:
    """A host whose agent is gone (its instance lost): declareHostAsDegraded (HA restarts the
    HA-enabled VMs elsewhere), then deleteHost, never forced, and only once no VM is recorded
    Running on it: deleteHost would mark such a VM Stopped."""
    t = api.timeouts
    id_, label = host["id"], host_label(host)
    if host.get("resourcestate") != "Degraded":
        LOG.info("%s is %s: declaring it Degraded", label, host.get("state"))
        _job(api, f"declare {label} degraded", "declareHostAsDegraded", id=id_)
    deadline = time.monotonic() + t.maintenance
    while True:
        running = [v for v in api.retrying(f"list VMs on {label}", lambda: vms_on(api, id_))
                   if v["state"] in ("Running", "Starting", "Stopping", "Migrating")]
        if not running:
            break
        if time.monotonic() > deadline:
            raise RegistrationError(
                f"not deleting {label} (id {id_}): it is {host.get('state')} (Degraded now) and CloudStack still "
                f"records VMs running on it after {t.maintenance:g}s: {describe(running)}. Deleting it would mark "
                f"them Stopped. If the host is really gone, start them on another host (or stop them) in CloudStack, "
                f"then run `pulumi up` again; if it comes back, `cancelHostAsDegraded` returns it to service.")
        api._sleep(t.poll_interval)
    _delete_host(api, id_, label)


def _delete_host(api: Api, id_: str, label: str) -> None:
    def step() -> None:
        try:
            api.call("deleteHost", id=id_)  # never forced: forced stops the VMs
        except CloudStackError as e:
            if not _is_gone(e):
                raise
    api.retrying(f"delete {label}", step)
    LOG.info("deleted %s (id %s)", label, id_)


def remove_hosts(api: Api, ids: list[str]) -> None:
    """Remove several hosts of one cluster, one at a time (ResourceManagerImpl.maintain allows
    one preparing host per cluster). First every leaving live host is Disabled, so that no
    VM migrates onto a host that leaves next: each VM moves at most once. Any failure
    enables the leaving hosts that are still registered again before it is raised."""
    hosts = [h for h in (api.retrying("read host", lambda i=i: get_host(api, i)) for i in ids) if h is not None]
    live = [h for h in hosts if h.get("state") not in DEAD_STATUSES]
    dead = [h for h in hosts if h.get("state") in DEAD_STATUSES]
    disabled: list[str] = []
    try:
        if len(live) > 1:
            for h in live:
                if h.get("resourcestate") == "Enabled":
                    api.retrying(f"disable {host_label(h)}",
                                 lambda h=h: api.call("updateHost", id=h["id"], allocationstate="Disable"))
                    disabled.append(h["id"])
                    h["resourcestate"] = "Disabled"
        # fewest VMs first: the cheapest migrations happen before capacity gets tight
        load = {h["id"]: len(api.retrying("list VMs", lambda h=h: vms_on(api, h["id"]))) for h in live}
        for h in sorted(live, key=lambda h: load[h["id"]]):
            remove_live_host(api, h)
            if h["id"] in disabled:
                disabled.remove(h["id"])
        for h in dead:
            remove_dead_host(api, h)
    finally:
        for id_ in disabled:
            host = get_host(api, id_)
            if host is not None:
                try:
                    return_to_service(api, host, host_label(host))
                except RegistrationError as e:  # the first error is the one to report
                    LOG.error("%s: could not return it to service: %s", host_label(host), e)


def _parallel(items: list[Any], fn: Callable[[Any], Obj], what: str) -> dict[str, Obj]:
    """fn over items in threads; all errors reported together (the others still finish)."""
    results: dict[str, Obj] = {}
    errors: list[str] = []
    if not items:
        return results
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_ADDS, len(items))) as pool:
        futures = {pool.submit(fn, i): i for i in items}
        for f, i in futures.items():
            try:
                results[i["ipaddress"]] = f.result()
            except RegistrationError as e:
                errors.append(str(e))
    if errors:
        raise RegistrationError(f"{what}: {len(errors)} of {len(items)} failed: " + " | ".join(errors))
    return results


class ClusterHosts(Kind):
    """props: zoneid, podid, clusterid, clustername, hypervisor, username, and hosts: a list of
    {"index": int, "ipaddress": str, "instance": str (the EC2 instance id, "" if unknown)}.
    Outputs add host_ids ({index: CloudStack id}) and states ({address: resourcestate/state})."""

    kind = "cluster hosts"
    replace_keys = ("zoneid", "podid", "clusterid", "hypervisor")
    update_keys = ("hosts", "username", "clustername")
    output_keys = ("id", "host_ids", "states", "service")
    probes = True

    def diff(self, olds, news):
        changed, replaces = super().diff(olds, news)
        if olds.get("service", "ok") != "ok":   # seen by a refresh or the provider's probe
            changed.append("service")
        return changed, replaces

    def label(self, props):
        return f"hosts of cluster {props.get('clustername')}"

    def _hosts(self, api: Api, props: Props) -> dict[str, Obj]:
        items = api.list("listHosts", "host", zoneid=props["zoneid"], clusterid=props["clusterid"], type="Routing")
        return {str(h.get("ipaddress")): h for h in items}

    def outs(self, found: dict[str, Obj], props: Props) -> dict[str, Any]:
        wanted = {h["ipaddress"]: h for h in props["hosts"]}
        # int(): numbers cross Pulumi's wire (protobuf Struct) as floats
        host_ids = {str(int(wanted[ip]["index"])): str(h["id"]) for ip, h in found.items() if ip in wanted}
        states = {ip: f"{h.get('resourcestate')}/{h.get('state')}" for ip, h in found.items() if ip in wanted}
        return {**dict(props), "host_ids": host_ids, "states": states, "service": "ok"}

    def create(self, api, props):
        found = _parallel(list(props["hosts"]), lambda h: ensure_host(api, props, h), f"add {self.label(props)}")
        return str(props["clusterid"]), self.outs(found, props)

    def read(self, api, id_, props):
        found = api.retrying(f"read {self.label(props)}", lambda: self._hosts(api, props))
        outs = self.outs(found, props)
        wanted = {h["ipaddress"] for h in props["hosts"]}
        # Drift that `pulumi up` repairs: a wanted host missing, or out of service.
        if wanted - set(found) or any(not s.startswith("Enabled/Up") for s in outs["states"].values()):
            outs["service"] = "needs attention"
        return outs

    def probe_service(self, api: Api, props: Props) -> bool:
        """True when every wanted host is registered, Enabled and Up."""
        return self.read(api, props["clusterid"], props)["service"] == "ok"

    def update(self, connect, id_, olds, news):
        changed, replaces = self.diff(olds, news)
        if replaces:
            raise RegistrationError(f"{self.label(news)}: {replaces} need a replacement, not an update")
        # Always converges (even when only connection details changed): the provider's diff may
        # have seen a host out of service, which `olds` (the saved state) does not show.
        api = connect()
        old = {h["ipaddress"]: h for h in olds.get("hosts", [])}
        new = {h["ipaddress"]: h for h in news["hosts"]}
        # a host whose instance was replaced leaves and comes back (its old record is dead)
        replaced = [ip for ip in new if ip in old and old[ip].get("instance") and new[ip].get("instance")
                    and old[ip]["instance"] != new[ip]["instance"]]
        leaving = [ip for ip in old if ip not in new] + replaced
        registered = api.retrying(f"read {self.label(news)}", lambda: self._hosts(api, news))
        ids = [str(registered[ip]["id"]) for ip in leaving if ip in registered]
        if ids:
            LOG.info("%s: removing %s", self.label(news), ", ".join(leaving))
            remove_hosts(api, ids)
        forget_ready(news, [ip for ip in old if ip not in new])
        found = _parallel(list(news["hosts"]), lambda h: ensure_host(api, news, h), f"add {self.label(news)}")
        return self.outs(found, news)

    def delete(self, api, id_, props):
        registered = api.retrying(f"read {self.label(props)}", lambda: self._hosts(api, props))
        wanted = {h["ipaddress"] for h in props["hosts"]}
        ids = [str(h["id"]) for ip, h in registered.items() if ip in wanted]
        if ids:
            remove_hosts(api, ids)
        forget_ready(props, sorted(wanted))


    def tear_down(self, props):
        forget_ready(props, [h["ipaddress"] for h in props["hosts"]])


class LegacyHost(Kind):
    """`host-<i>` resources of states written before hosts were grouped per cluster. They are
    never created any more; deleting one only forgets it: its host now belongs to the
    cluster's `hosts-<c>` resource, which adopted it (removing it here would take a host
    that should stay out of service)."""

    kind = "host"
    replace_keys = ("zoneid", "podid", "clusterid", "url", "ipaddress", "hypervisor")
    update_keys = ("username",)

    def label(self, props):
        return f"host {props.get('ipaddress')}"

    def get(self, api, id_, props):
        return get_host(api, id_)

    def live(self, obj, props):
        return {"zoneid": obj.get("zoneid"), "podid": obj.get("podid"), "clusterid": obj.get("clusterid"),
                "ipaddress": obj.get("ipaddress"), "hostname": obj.get("name"), "state": obj.get("state"),
                "resourcestate": obj.get("resourcestate")}

    def change(self, api, id_, olds, news, changed):
        LOG.info("%s: %s recorded", self.label(news), ", ".join(changed))

    def create(self, api, props):
        raise RegistrationError("host-<i> resources are no longer created: hosts belong to their cluster's "
                                "hosts-<c> resource")

    def delete(self, api, id_, props):
        LOG.info("%s: forgetting the per-host resource; the cluster's hosts resource manages the host now",
                 self.label(props))
