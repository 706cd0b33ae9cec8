"""The management servers the agents follow: the `management_servers` kind (no Pulumi here).

Agents (KVM hosts, the secondary storage VM, the console proxy) connect to the addresses in
the `host` setting, ordered per agent by `indirect.agent.lb.algorithm`
(IndirectAgentLBServiceImpl.getManagementServerList); a change of either is pushed to every
agent at once (ConfigurationManagerImpl, on a changed `host` or algorithm:
IndirectAgentLB.propagateMSListToAgents). Both are global settings of the plan, set before
this resource.

This resource stops, cleanly, every management server that left the program (a lower
managementServerCount) before Pulumi deletes its instance (deletes of resources that left
the program run after every create and update), with the shutdown API of 4.19+
(plugins/shutdown, ShutdownManagerImpl):
  prepareForShutdown   the server takes no new jobs (mshost state PreparingToShutDown);
  readyForShutdown     polled until it has no pending job (`readyforshutdown`);
  triggerShutdown      it exits once idle (state ShuttingDown, then Down when it stops:
                       ClusterManagerImpl marks its mshost row Down);
then its agents, which no longer have it in their list, reconnect to the others: every host
of the zone is waited for to be Up again.

The servers are matched by `serviceip` (ManagementServerResponse; the mshost row's address,
which cloudstack-setup-databases -i writes into db.properties: the overlay address).
"""

from __future__ import annotations

import time
from typing import Any

from .base import Kind, Obj, Props
from .client import LOG, Api, RegistrationError

#: mshost states (ManagementServerHost.State) of a server that still serves or is stopping.
RUNNING = ("Up", "PreparingToShutDown", "ReadyToShutDown", "ShuttingDown")
#: ... of a server the shutdown was already asked of (prepareForShutdown again would fail:
#: "A shutdown has already been triggered", ShutdownManagerImpl.prepareForShutdown).
STOPPING = ("PreparingToShutDown", "ReadyToShutDown", "ShuttingDown")


def _answer(r: dict[str, Any], name: str) -> dict[str, Any]:
    """The ReadyForShutdownResponse inside an answer (object name `name`, or flat)."""
    inner = r.get(name)
    return inner if isinstance(inner, dict) else r


class ManagementServers(Kind):
    kind = "management servers"
    preexisting = True
    update_keys = ("servers",)

    def label(self, props: Props) -> str:
        return "management servers"

    def find(self, api: Api, props: Props) -> Obj | None:
        return self.get(api, "management-servers", props)

    def get(self, api: Api, id_: str, props: Props) -> Obj | None:
        servers = api.list("listManagementServers", "managementserver")
        return {"id": id_, "running": sorted(s.get("serviceip", "") for s in servers if s.get("state") in RUNNING)}

    def converge(self, api: Api, obj: Obj, props: Props) -> Obj:
        wanted, servers = set(props["servers"]), api.list("listManagementServers", "managementserver")
        unknown = [s.get("name") for s in servers if s.get("state") in RUNNING and not s.get("serviceip")]
        if unknown:
            LOG.warning("management servers %s report no serviceip: cannot tell whether they left; none drained",
                        unknown)
        leaving = [s for s in servers
                   if s.get("state") in RUNNING and s.get("serviceip") and s["serviceip"] not in wanted]
        for server in leaving:
            drain(api, server, props.get("zoneid"))
        return self.get(api, obj["id"], props) if leaving else obj

    def live(self, obj: Obj, props: Props) -> dict[str, Any]:
        return {}

    def change(self, api: Api, id_: str, olds: Props, news: Props, changed: list[str]) -> None:
        """Nothing to call: converge, which runs after, drains the servers that left."""

    def remove(self, api: Api, id_: str, props: Props) -> None:
        """The cloud goes as a whole: no server is drained."""


def drain(api: Api, server: Obj, zoneid: str | None) -> None:
    """Stop `server` (a listManagementServers item) cleanly, then wait for the hosts whose
    agents it held (HostResponse `managementserverid`) to be Up on another server. Bounded by
    timeouts.maintenance for the pending jobs and timeouts.host_up for the rest; raises
    RegistrationError naming the server when a bound passes."""
    sid, ip, t = server["id"], server.get("serviceip"), api.timeouts
    held = {h["id"] for h in api.list("listHosts", "host", type="Routing", zoneid=zoneid)
            if h.get("managementserverid") == sid}
    if server.get("state") == "Up":
        LOG.info("management server %s (%s) leaves: preparing it for shutdown", server.get("name"), ip)
        api.retrying("prepareForShutdown", lambda: api.call("prepareForShutdown", managementserverid=sid))
    _wait(api, t.maintenance, f"management server {ip} to finish its pending jobs",
          lambda: _answer(api.get("readyForShutdown", managementserverid=sid), "readyforshutdown")
          .get("readyforshutdown") is True)
    if server.get("state") != "ShuttingDown":
        api.retrying("triggerShutdown", lambda: api.call("triggerShutdown", managementserverid=sid))
    _wait(api, t.host_up, f"management server {ip} to stop (mshost state Down)",
          lambda: all(s.get("state") not in RUNNING for s in api.list("listManagementServers", "managementserver",
                                                                        id=sid)))
    _wait(api, t.host_up, f"the {len(held)} host(s) of management server {ip} to reconnect to the others",
          lambda: all(h.get("state") == "Up" and h.get("managementserverid") != sid
                      for h in api.list("listHosts", "host", type="Routing", zoneid=zoneid) if h["id"] in held))
    LOG.info("management server %s stopped; its %d host(s) moved to the others", ip, len(held))


def _wait(api: Api, bound: float, what: str, done) -> None:
    deadline = time.monotonic() + bound
    while not done():
        if time.monotonic() > deadline:
            raise RegistrationError(f"waited {bound:g}s for {what}; see its management-server.log, then run "
                                    f"`pulumi up` again")
        api._sleep(api.timeouts.poll_interval)
