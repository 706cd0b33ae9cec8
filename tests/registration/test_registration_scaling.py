"""Scaling hosts: clusters follow hostsPerCluster, and a scale-in never loses a VM."""

from __future__ import annotations

import pytest
from registration_specs import FAST, REGION
from registration_engine import Engine
from registration_specs import make_spec

from components.registration.client import RegistrationError


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
    assert sorted(placement) == ["vm-a", "vm-b", "vm-c", "vm-d", "vm-e", "vm-f"]
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
    assert sorted(n for n in engine.state if n.startswith(("host-", "cluster-"))) == \
        ["cluster-0", "host-0", "host-1", "host-2"]


def test_host_whose_vms_cannot_migrate_is_not_deleted(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(2, timeouts=FAST))
    h1 = emulator.host_by_ip("10.100.0.11")
    emulator.add_vm(h1["id"], "pinned-vm", migratable=False)   # e.g. on local storage
    emulator.add_vm(h1["id"], "mobile-vm")

    with pytest.raises(RegistrationError) as e:
        engine.up(make_spec(1, timeouts=FAST))
    msg = str(e.value)
    assert "10.100.0.11" in msg and "pinned-vm" in msg and "Nothing was deleted" in msg
    host = emulator.host_by_ip("10.100.0.11")
    assert host["resourcestate"] == "Enabled"          # maintenance cancelled: back in service
    assert vm_placement(emulator)["pinned-vm"] == "10.100.0.11"
    assert emulator.lost_vms == []
    assert not any(r["command"] == "deleteHost" for r in emulator.requests)
    assert "host-1" in engine.state                    # Pulumi keeps it (and so its EC2 instance)


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


def test_adopted_host_in_maintenance_is_put_back_in_service(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(2, timeouts=FAST))
    h1 = emulator.host_by_ip("10.100.0.11")
    with emulator.lock:
        h1["resourcestate"] = "ErrorInMaintenance"
    del engine.state["host-1"]                            # state lost
    engine.up(make_spec(2, timeouts=FAST))
    assert emulator.host_by_ip("10.100.0.11")["resourcestate"] == "Enabled"
    assert len(emulator.hosts) == 2
