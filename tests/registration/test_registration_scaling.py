"""Scaling hosts: clusters follow hostsPerCluster, and a scale-in never loses a VM."""

from __future__ import annotations

import pytest
from registration_specs import FAST, REGION
from registration_engine import Engine
from registration_specs import make_spec

from components.registration.client import RegistrationError
from components.registration.spec import Timeouts


def vm_placement(emu):
    with emu.lock:
        return {v["name"]: emu.hosts[v["hostid"]]["ipaddress"] for v in emu.vms.values()}


def test_scale_1_to_20_to_3_hosts_clusters_follow_and_vms_survive(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(1, timeouts=FAST))
    h0 = emulator.host_by_ip("10.100.0.10")
    emulator.add_vm(h0["id"], "vm-a")
    emulator.add_vm(h0["id"], "vm-b")

    engine.up(make_spec(20, timeouts=FAST))
    assert len(emulator.hosts) == 20 and len(emulator.clusters) == 2
    by_cluster = {}
    for h in emulator.hosts.values():
        by_cluster.setdefault(h["clustername"], []).append(h["ipaddress"])
    assert sorted(len(v) for v in by_cluster.values()) == [4, 16]
    assert all(h["state"] == "Up" for h in emulator.hosts.values())
    for ip, name in (("10.100.0.15", "vm-c"), ("10.100.0.27", "vm-d"), ("10.100.0.29", "vm-e"),
                     ("10.100.0.29", "vm-f")):
        emulator.add_vm(emulator.host_by_ip(ip)["id"], name)   # hosts 5, 17 and 19
    before = len(emulator.requests)

    engine.up(make_spec(3, timeouts=FAST))
    assert sorted(h["ipaddress"] for h in emulator.hosts.values()) == ["10.100.0.10", "10.100.0.11",
                                                                        "10.100.0.12"]
    assert [c["name"] for c in emulator.clusters.values()] == ["zone1-cluster-0"]
    placement = vm_placement(emulator)
    assert sorted(n for n in placement if n.startswith("vm-")) == ["vm-a", "vm-b", "vm-c", "vm-d", "vm-e", "vm-f"]
    assert {n[0] for n in placement if not n.startswith("vm-")} == {"s", "v"}   # system VMs moved too
    assert set(placement.values()) <= {"10.100.0.10", "10.100.0.11", "10.100.0.12"}
    assert emulator.lost_vms == []
    calls = emulator.requests[before:]
    deletes = [r for r in calls if r["command"] == "deleteHost"]
    assert len(deletes) == 17 and all("forced" not in r["params"] for r in deletes)
    for d in deletes:   # each deleted host went through maintenance first
        i = calls.index(d)
        assert any(r["command"] == "prepareHostForMaintenance" and r["params"]["id"] == d["params"]["id"]
                   for r in calls[:i])
    # the cluster went after its last host
    last_host_delete = max(i for i, r in enumerate(calls) if r["command"] == "deleteHost")
    assert [i for i, r in enumerate(calls) if r["command"] == "deleteCluster" and r["status"] == 200][0] > \
        last_host_delete
    assert sorted(n for n in engine.state if n.startswith(("hosts-", "cluster-"))) == ["cluster-0", "hosts-0"]
    assert engine.state["hosts-0"]["outs"]["host_ids"].keys() == {"0", "1", "2"}


def in_maintenance(emu):
    with emu.lock:
        return {h["ipaddress"]: h["resourcestate"] for h in emu.hosts.values()
                if h["resourcestate"] not in ("Enabled",)}


def test_shrink_8_to_2_hosts_of_one_cluster_with_vms_everywhere(emulator, api_secret):
    """One host per cluster may prepare for maintenance at a time (ResourceManagerImpl.maintain);
    the leaving hosts are disabled first, so every VM moves once, to a staying host."""
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(8, timeouts=FAST))
    names = []
    for i in range(8):
        host = emulator.host_by_ip(f"10.100.0.{10 + i}")
        for kind, n in (("User", 2), ("DomainRouter", 1)):
            for k in range(n):
                names.append(emulator.add_vm(host["id"], f"{kind.lower()}-{i}-{k}", type=kind) and
                              f"{kind.lower()}-{i}-{k}")
    ssvm = emulator.add_vm(emulator.host_by_ip("10.100.0.17")["id"], "s-9-VM", type="SecondaryStorageVm")
    assert ssvm
    before = len(emulator.requests)
    moves: dict[str, int] = {}
    real_attempt = emulator._attempt_maintain

    def counting(h):   # count how often each VM moves
        on = {v["id"]: v["hostid"] for v in emulator.vms.values()}
        real_attempt(h)
        for v in emulator.vms.values():
            if on.get(v["id"]) != v["hostid"]:
                moves[v["name"]] = moves.get(v["name"], 0) + 1
    emulator._attempt_maintain = counting

    engine.up(make_spec(2, timeouts=FAST))
    placement = vm_placement(emulator)
    system_vms = {n for n in placement if n.startswith(("s-", "v-"))}       # the zone's SSVM and console proxy
    assert sorted(placement) == sorted(names + list(system_vms)) and "s-9-VM" in system_vms  # all VMs kept
    assert set(placement.values()) == {"10.100.0.10", "10.100.0.11"}
    assert emulator.lost_vms == [] and in_maintenance(emulator) == {}        # no host left in maintenance
    assert sorted(h["ipaddress"] for h in emulator.hosts.values()) == ["10.100.0.10", "10.100.0.11"]
    assert set(moves.values()) == {1}                                        # no VM moved twice
    calls = emulator.requests[before:]
    refused = [r for r in calls if r["command"] == "queryAsyncJobResult" and r["status"] != 200]
    assert refused == []
    deletes = [r for r in calls if r["command"] == "deleteHost"]
    assert len(deletes) == 6 and all("forced" not in r["params"] for r in deletes)


def test_cluster_busy_waits_for_its_turn_within_the_maintenance_timeout(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(3, timeouts=FAST))
    other = emulator.host_by_ip("10.100.0.10")
    with emulator.lock:   # an operator put another host of the cluster into maintenance meanwhile
        other["resourcestate"] = "PrepareForMaintenance"
        other["maintenance_at"] = __import__("time").monotonic() + 1.0
    engine.up(make_spec(2, timeouts=FAST))
    assert sorted(h["ipaddress"] for h in emulator.hosts.values()) == ["10.100.0.10", "10.100.0.11"]
    fails = [r for r in emulator.requests if r["command"] == "prepareHostForMaintenance"]
    assert len(fails) >= 2   # refused (busy) while host 0 prepared, then accepted


def test_host_whose_vms_have_no_target_stays_in_service_and_the_error_names_them(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(2, hosts_per_cluster=1, timeouts=FAST))
    with emulator.lock:
        emulator.config["migrate.vm.across.clusters"] = "false"   # so cluster 1's VMs have nowhere to go
    h1 = emulator.host_by_ip("10.100.0.11")
    emulator.add_vm(h1["id"], "web-1")
    emulator.add_vm(h1["id"], "r-7-VM", type="DomainRouter")
    emulator.add_vm(h1["id"], "v-2-VM", type="ConsoleProxy")

    with pytest.raises(RegistrationError) as e:
        engine.up(make_spec(1, timeouts=FAST))
    msg = str(e.value)
    assert "10.100.0.11" in msg and "Nothing was deleted" in msg
    for vm in ("web-1 (VM, Running)", "r-7-VM (router, Running)", "v-2-VM (consoleproxy, Running)"):
        assert vm in msg
    host = emulator.host_by_ip("10.100.0.11")
    assert host["resourcestate"] == "Enabled"                 # maintenance cancelled: serving again
    assert vm_placement(emulator)["web-1"] == "10.100.0.11" and emulator.lost_vms == []
    assert not any(r["command"] == "deleteHost" for r in emulator.requests)
    assert "hosts-1" in engine.state                          # Pulumi keeps it (and so its EC2 instance)


def test_vms_on_local_storage_block_the_maintenance_and_the_host_keeps_serving(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(2, timeouts=FAST))
    h1 = emulator.host_by_ip("10.100.0.11")
    emulator.add_vm(h1["id"], "pinned-vm", migratable=False)
    with pytest.raises(RegistrationError, match="local storage.*pinned-vm"):
        engine.up(make_spec(1, timeouts=FAST))
    assert emulator.host_by_ip("10.100.0.11")["resourcestate"] == "Enabled" and emulator.lost_vms == []


def test_no_room_ends_in_error_in_maintenance_then_cancelled(emulator, api_secret):
    """Migrations fail (the target is full): ErrorInPrepareForMaintenance, then ErrorInMaintenance
    (ResourceManagerImpl.attemptMaintain); the host is returned to service."""
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(2, timeouts=FAST))
    h0, h1 = emulator.host_by_ip("10.100.0.10"), emulator.host_by_ip("10.100.0.11")
    emulator.capacity[h0["id"]] = 0
    emulator.add_vm(h1["id"], "big-vm")
    seen = []
    real_attempt = emulator._attempt_maintain

    def recording(h):
        real_attempt(h)
        seen.append(h["resourcestate"])
    emulator._attempt_maintain = recording
    with pytest.raises(RegistrationError, match="ErrorInMaintenance.*big-vm"):
        engine.up(make_spec(1, timeouts=FAST))
    assert seen[:2] == ["ErrorInPrepareForMaintenance", "ErrorInMaintenance"]
    assert emulator.host_by_ip("10.100.0.11")["resourcestate"] == "Enabled"


def test_disabled_host_is_enabled_before_maintenance(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(2, timeouts=FAST))
    with emulator.lock:
        emulator.host_by_ip("10.100.0.11")["resourcestate"] = "Disabled"
    engine.up(make_spec(1, timeouts=FAST))
    assert [h["ipaddress"] for h in emulator.hosts.values()] == ["10.100.0.10"]


def test_dead_host_is_declared_degraded_then_deleted(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(3, timeouts=FAST))
    h2 = emulator.host_by_ip("10.100.0.12")
    emulator.add_vm(h2["id"], "ha-vm", ha=True)
    emulator.kill_host("10.100.0.12")           # its instance was lost
    engine.up(make_spec(2, timeouts=FAST))
    assert sorted(h["ipaddress"] for h in emulator.hosts.values()) == ["10.100.0.10", "10.100.0.11"]
    assert vm_placement(emulator)["ha-vm"] in ("10.100.0.10", "10.100.0.11") and emulator.lost_vms == []
    calls = [r["command"] for r in emulator.requests]
    assert calls.index("declareHostAsDegraded") < calls.index("deleteHost")
    assert "prepareHostForMaintenance" not in calls


def test_dead_host_with_a_running_vm_that_would_be_lost_is_not_deleted(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(2, timeouts=FAST))
    emulator.add_vm(emulator.host_by_ip("10.100.0.11")["id"], "no-ha-vm")
    emulator.kill_host("10.100.0.11", "Disconnected")
    with pytest.raises(RegistrationError, match="no-ha-vm"):
        engine.up(make_spec(1, timeouts=Timeouts(**{**FAST.as_dict(), "maintenance": 0.5})))
    assert emulator.lost_vms == [] and len(emulator.hosts) == 2
    assert not any(r["command"] == "deleteHost" for r in emulator.requests)


def test_scale_in_of_a_host_already_in_maintenance_resumes(emulator, api_secret):
    """A scale-in interrupted after prepareHostForMaintenance finishes on the next run."""
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(2, timeouts=FAST))
    h1 = emulator.host_by_ip("10.100.0.11")
    with emulator.lock:
        h1["resourcestate"] = "Maintenance"
    engine.up(make_spec(1, timeouts=FAST))
    assert [h["ipaddress"] for h in emulator.hosts.values()] == ["10.100.0.10"]
    assert not any(r["command"] == "prepareHostForMaintenance" for r in emulator.requests)


@pytest.mark.parametrize("state", ["ErrorInMaintenance", "Maintenance", "PrepareForMaintenance",
                                   "ErrorInPrepareForMaintenance", "Disabled"])
def test_host_found_out_of_service_on_pulumi_up_is_returned_to_service(emulator, api_secret, state):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(2, timeouts=FAST))
    with emulator.lock:
        emulator.host_by_ip("10.100.0.11")["resourcestate"] = state
        emulator.host_by_ip("10.100.0.11")["maintenance_at"] = float("inf")
    engine.up(make_spec(2, timeouts=FAST))      # nothing changed in the program
    assert emulator.host_by_ip("10.100.0.11")["resourcestate"] == "Enabled"
    assert ("update", "hosts-0") in engine.log


def test_adopted_host_in_maintenance_is_put_back_in_service(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(2, timeouts=FAST))
    with emulator.lock:
        emulator.host_by_ip("10.100.0.11")["resourcestate"] = "ErrorInMaintenance"
    del engine.state["hosts-0"]                           # state lost
    engine.up(make_spec(2, timeouts=FAST))
    assert emulator.host_by_ip("10.100.0.11")["resourcestate"] == "Enabled"
    assert len(emulator.hosts) == 2
