"""Several management servers: the `host` list and the algorithm the agents follow, set and
read back; a server that leaves (a lower managementServerCount) is drained with the shutdown
API and its agents move to the others (tests/emulator/management_cluster.py names the sources)."""

from __future__ import annotations

import pytest
from registration_engine import Engine
from registration_specs import FAST, REGION, make_spec

from components.registration.client import Api, CloudStackError

SERVERS = ["10.100.0.2", "10.100.0.3", "10.100.0.4"]
DRAIN = ("prepareForShutdown", "readyForShutdown", "triggerShutdown")


def settings(emu, *names):
    with emu.lock:
        return {n: emu.config[n] for n in names}


def engine_api(emu):
    return Api(emu.url, emu.apikey, emu.secretkey, FAST)


def test_one_server_sets_its_address_and_roundrobin(emulator, api_secret):
    Engine(emulator.url, api_secret, REGION).up(make_spec(1, timeouts=FAST))
    assert settings(emulator, "host", "indirect.agent.lb.algorithm") == {
        "host": "10.100.0.2", "indirect.agent.lb.algorithm": "roundrobin"}
    assert emulator.management_agents() == {"10.100.0.10": (["10.100.0.2"], "10.100.0.2")}
    assert not [r for r in emulator.requests if r["command"] in DRAIN]


def test_scale_1_to_3_to_2_lists_every_server_and_drains_the_one_that_leaves(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(1, timeouts=FAST))

    # 1 -> 3: the two new servers joined (their boot) before the registration runs
    for ip in SERVERS[1:]:
        emulator.add_management_server(ip)
    engine.up(make_spec(3, timeouts=FAST, management_count=3))
    assert settings(emulator, "host")["host"] == ",".join(SERVERS)
    # the existing agent got the new list (pushed with the setting) and stayed where it was
    assert emulator.management_agents()["10.100.0.10"] == (SERVERS, "10.100.0.2")
    assert [emulator.management_server_by_ip(ip)["state"] for ip in SERVERS] == ["Up"] * 3
    assert not [r for r in emulator.requests if r["command"] in DRAIN]

    # 3 -> 2: the third server is drained and leaves the list
    engine.up(make_spec(1, timeouts=FAST, management_count=2))
    assert settings(emulator, "host")["host"] == ",".join(SERVERS[:2])
    assert [emulator.management_server_by_ip(ip)["state"] for ip in SERVERS] == ["Up", "Up", "Down"]
    assert emulator.management_agents()["10.100.0.10"] == (SERVERS[:2], "10.100.0.2")


def test_scale_in_drains_the_leaving_server_before_its_agents_move(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    for ip in SERVERS[1:]:
        emulator.add_management_server(ip)
    engine.up(make_spec(3, timeouts=FAST, management_count=3))
    agents = emulator.management_agents()
    # roundrobin: each agent's list is rotated by its host's place, so the three agents start on
    # three different servers
    assert sorted(server for _, server in agents.values()) == SERVERS
    assert all(servers[0] == server for servers, server in agents.values())
    on_leaving = next(ip for ip, (_, server) in agents.items() if server == "10.100.0.4")
    assert agents[on_leaving][0] == ["10.100.0.4", "10.100.0.2", "10.100.0.3"]
    leaving = emulator.management_server_by_ip("10.100.0.4")
    emulator.give_pending_jobs("10.100.0.4", 0.3)   # it finishes its jobs before it stops
    before = len(emulator.requests)

    engine.up(make_spec(3, timeouts=FAST, management_count=2))
    calls = [r for r in emulator.requests[before:] if r["status"] == 200]
    assert settings(emulator, "host")["host"] == "10.100.0.2,10.100.0.3"
    drained = [r["command"] for r in calls if r["command"] in DRAIN]
    assert drained[0] == "prepareForShutdown" and drained[-1] == "triggerShutdown"
    assert all(r["params"]["managementserverid"] == leaving["id"] for r in calls if r["command"] in DRAIN)
    # the setting went first: the agents had the new list before their server stopped
    setting = next(i for i, r in enumerate(calls) if r["command"] == "updateConfiguration"
                   and r["params"]["name"] == "host")
    assert setting < next(i for i, r in enumerate(calls) if r["command"] == "prepareForShutdown")
    # triggered only once it had no pending job
    ready = [i for i, r in enumerate(calls) if r["command"] == "readyForShutdown"]
    assert len(ready) >= 2
    assert emulator.management_server_by_ip("10.100.0.4")["state"] == "Down"
    assert emulator.agents_of("10.100.0.4") == []
    servers, server = emulator.management_agents()[on_leaving]
    assert servers[0] == server and server in ("10.100.0.2", "10.100.0.3")
    assert sorted(servers) == ["10.100.0.2", "10.100.0.3"]
    assert all(h["state"] == "Up" for h in emulator.hosts.values())

    # a second run: nothing left to drain
    before = len(emulator.requests)
    engine.up(make_spec(3, timeouts=FAST, management_count=2))
    assert not [r for r in emulator.requests[before:] if r["command"] in DRAIN]


def test_emulator_refuses_an_unknown_algorithm_and_a_second_prepare(emulator, api_secret):
    Engine(emulator.url, api_secret, REGION).up(make_spec(1, timeouts=FAST))
    api = engine_api(emulator)
    with pytest.raises(CloudStackError, match="Invalid algorithm"):
        api.call("updateConfiguration", name="indirect.agent.lb.algorithm", value="leastconn")
    server = emulator.management_server_by_ip("10.100.0.2")
    api.call("prepareForShutdown", managementserverid=server["id"])
    with pytest.raises(CloudStackError, match="already been triggered"):
        api.call("prepareForShutdown", managementserverid=server["id"])
    api.call("cancelShutdown", managementserverid=server["id"])
    assert emulator.management_server_by_ip("10.100.0.2")["state"] == "Up"
