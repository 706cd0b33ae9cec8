"""The emulator's management servers: several servers on one database, the agents' server
lists and the shutdown API (mixed into server.Emulator).

As the real sources behave:
- `host` (ApiServiceConfiguration.ManagementServerAddresses) is a comma-separated list;
  each agent gets it ordered by `indirect.agent.lb.algorithm`
  (IndirectAgentLBServiceImpl.getManagementServerList): static keeps the order, roundrobin
  rotates it by the host's place among the zone's agent hosts ordered by id
  (IndirectAgentLBRoundRobinAlgorithm.sort), shuffle shuffles it. The algorithm is a
  Select setting of static, roundrobin, shuffle (IndirectAgentLBServiceImpl
  .IndirectAgentLBAlgorithm; ConfigurationManagerImpl refuses another value).
- A change of either is pushed to every agent (ConfigurationManagerImpl, on a changed
  `host` or algorithm: propagateMSListToAgents(false)): the agents take the new list and
  stay where they are connected.
- An agent connects to the first server of its list that runs (the agent's
  Agent/NioClient: the next host of its list on every failed connect); when its server
  stops it reconnects the same way, and with none left it stays Disconnected.
- The shutdown API (plugins/shutdown, ShutdownManagerImpl, since 4.19): prepareForShutdown
  (state PreparingToShutDown; again: "A shutdown has already been triggered"),
  readyForShutdown (readyforshutdown once the server has no pending job), triggerShutdown
  (ShuttingDown; the server exits once idle and its mshost row goes Down).
"""

from __future__ import annotations

import ipaddress
import random
import time
import uuid
from typing import Any

#: ManagementServerHost.State of a server that runs (agents may connect to it).
RUNNING = ("Up", "PreparingToShutDown", "ReadyToShutDown", "ShuttingDown")
#: IndirectAgentLBServiceImpl.IndirectAgentLBAlgorithm's options.
ALGORITHMS = ("static", "roundrobin", "shuffle")


class ApiRefusal(Exception):
    """Raised by the mixin; server.Emulator turns it into its ApiError."""


class ManagementCluster:
    """State: `mshosts` (id → server), each host's `_mslist` (the list its agent holds) and
    `managementserverid` (the server its agent is connected to)."""

    def _init_management(self, first_ip: str, version: str, underlay_ip: str) -> None:
        self.mshosts: dict[str, dict] = {}
        self.add_management_server(first_ip, version, underlay_ip)

    # -- test helpers ------------------------------------------------------------------
    def add_management_server(self, ip: str, version: str = "4.22.1.0", *other_addresses: str) -> dict:
        """A management server that started (its mshost row Up) at overlay address `ip`
        (its service_ip, listed as serviceip); agents reach it at `other_addresses` too
        (the first server's underlay address, which it writes into `host` on first start)."""
        with self.lock:
            sid = str(uuid.uuid4())
            self.mshosts[sid] = {"id": sid, "name": f"management-{ip}", "serviceip": ip, "state": "Up",
                                 "version": version, "_pending_until": 0.0, "_addresses": (ip, *other_addresses)}
            return self.mshosts[sid]

    def management_server_by_ip(self, ip: str) -> dict:
        with self.lock:
            self._advance()
            return next(s for s in self.mshosts.values() if s["serviceip"] == ip)

    def give_pending_jobs(self, ip: str, seconds: float) -> None:
        """Server `ip` runs jobs for `seconds` more (readyForShutdown false until then)."""
        with self.lock:
            self.management_server_by_ip(ip)["_pending_until"] = time.monotonic() + seconds

    def crash_management_server(self, ip: str) -> None:
        """The server's instance is gone: its peers mark its row Down; its agents move."""
        with self.lock:
            self._server_stopped(self.management_server_by_ip(ip))

    def agents_of(self, ip: str) -> list[str]:
        """The overlay addresses of the hosts whose agents are connected to server `ip`."""
        with self.lock:
            self._advance()
            sid = self.management_server_by_ip(ip)["id"]
            return sorted(h["ipaddress"] for h in self.hosts.values() if h.get("managementserverid") == sid)

    # -- agents --------------------------------------------------------------------------
    def _ms_addresses(self) -> list[str]:
        return [a for a in self.config["host"].replace(" ", "").split(",") if a]

    def _agent_list(self, host: dict) -> list[str]:
        """getManagementServerList(hostId, dcId, orderedHostIdList) for `host`."""
        servers, algorithm = self._ms_addresses(), self.config["indirect.agent.lb.algorithm"]
        if len(servers) < 2 or algorithm == "static":
            return servers
        if algorithm == "shuffle":
            return random.sample(servers, len(servers))
        # the zone's hosts ordered by their database id, i.e. in the order they were added
        ordered = [h["id"] for h in self.hosts.values() if h["zoneid"] == host["zoneid"]]
        k = ordered.index(host["id"]) % len(servers)
        return servers[k:] + servers[:k]

    def _connect_agent(self, host: dict) -> None:
        """The agent tries its list in order; the first running server takes it."""
        by_ip = {a: s for s in self.mshosts.values() if s["state"] in RUNNING for a in s["_addresses"]}
        server = next((by_ip[a] for a in host.get("_mslist", []) if a in by_ip), None)
        if server is None:
            host["managementserverid"], host["state"] = None, "Disconnected"
        else:
            host["managementserverid"] = server["id"]

    def _propagate_ms_list(self) -> None:
        """propagateMSListToAgents(false): new lists, no reconnection."""
        for h in self.hosts.values():
            h["_mslist"] = self._agent_list(h)

    def _agent_added(self, host: dict) -> None:
        """A new agent gets its list (the StartupAnswer's) and connects."""
        host["_mslist"] = self._agent_list(host)
        self._connect_agent(host)

    def _server_stopped(self, server: dict) -> None:
        server["state"] = "Down"
        for h in self.hosts.values():
            if h.get("managementserverid") == server["id"]:
                self._connect_agent(h)

    def _advance_management(self, now: float) -> None:
        for s in self.mshosts.values():
            idle = s["_pending_until"] <= now
            if s["state"] == "PreparingToShutDown" and idle:
                s["state"] = "ReadyToShutDown"       # ShutdownTask, every 30 s
            elif s["state"] == "ShuttingDown" and idle:
                self._server_stopped(s)               # System.exit(0)

    # -- settings ------------------------------------------------------------------------
    def _check_management_setting(self, name: str, value: str) -> None:
        if name == "indirect.agent.lb.algorithm" and value not in ALGORITHMS:
            raise ApiRefusal(f"Invalid algorithm {value}, valid values are: {list(ALGORITHMS)}")
        if name == "host":
            for item in value.replace(" ", "").split(","):
                try:
                    ipaddress.IPv4Address(item)
                except ValueError:
                    raise ApiRefusal(f"Please enter a valid IP address for the setting host: {item!r}") from None

    # -- API -----------------------------------------------------------------------------
    def _ms_view(self, s: dict) -> dict:
        return {k: v for k, v in s.items() if not k.startswith("_")}

    def _cmd_listManagementServers(self, a: dict) -> dict:
        items = [self._ms_view(s) for s in self.mshosts.values() if self._match(s, a, "id", "name", "version")]
        return self._list("managementserver", items, a)

    def _ms(self, a: dict) -> dict:
        server = self.mshosts.get(a["managementserverid"])
        if server is None:
            raise ApiRefusal(f"Unable to find management server with id {a['managementserverid']}")
        return server

    def _ready(self, s: dict, name: str) -> dict:
        pending = 0 if s["_pending_until"] <= time.monotonic() else 1
        return {name: {"managementserverid": s["id"], "readyforshutdown": pending == 0, "pendingjobscount": pending,
                       "shutdowntriggered": s["state"] in ("ShuttingDown", "PreparingToShutDown", "ReadyToShutDown")}}

    def _cmd_prepareForShutdown(self, a: dict) -> dict:
        s = self._ms(a)
        if s["state"] not in ("Up",):
            # the cluster command reaches the server, whose ShutdownManagerImpl refuses
            raise ApiRefusal("A shutdown has already been triggered" if s["state"] in RUNNING
                             else f"Management server {s['id']} is {s['state']}")
        s["state"] = "PreparingToShutDown"
        return self._ready(s, "prepareforshutdown")

    def _cmd_readyForShutdown(self, a: dict) -> dict:
        return self._ready(self._ms(a), "readyforshutdown")

    def _cmd_triggerShutdown(self, a: dict) -> dict:
        s = self._ms(a)
        if s["state"] not in RUNNING or s["state"] == "ShuttingDown":
            raise ApiRefusal("A shutdown has already been triggered" if s["state"] == "ShuttingDown"
                             else f"Management server {s['id']} is {s['state']}")
        s["state"] = "ShuttingDown"
        answer = self._ready(s, "triggershutdown")
        self._advance_management(time.monotonic())
        return answer

    def _cmd_cancelShutdown(self, a: dict) -> dict:
        s = self._ms(a)
        if s["state"] not in ("PreparingToShutDown", "ReadyToShutDown", "ShuttingDown"):
            raise ApiRefusal("A shutdown has not been triggered")
        s["state"] = "Up"
        return self._ready(s, "cancelshutdown")

    def management_agents(self) -> dict[str, Any]:
        """Overlay address of each host → (its agent's list, the address of its server)."""
        with self.lock:
            self._advance()
            ips = {s["id"]: s["serviceip"] for s in self.mshosts.values()}
            return {h["ipaddress"]: (list(h.get("_mslist", [])), ips.get(h.get("managementserverid")))
                    for h in self.hosts.values()}
