"""Hosts of two instance types against the CloudStack API emulator: the new type gets its own
cluster, the existing hosts stay where they are, and no VM live-migrates to the other type."""

from __future__ import annotations

import pytest
from registration_engine import Engine
from registration_specs import FAST, REGION

from components.model.ipplan import build_plan
from components.registration.client import RegistrationError
from components.model.hosttypes import HostTypes
from components.program import cross_cluster_migration
from components.registration.spec import build_spec

METAL, NESTED = "m5zn.metal", "c8i.4xlarge"


def spec_for(types: list[str], running: tuple[str, ...] = ()):
    """As components.program builds it: the hosts' types, and no cross-cluster migration
    while more than one type is planned or still running (`running`: the types of the
    host instances that exist, those about to be removed included)."""
    plan = build_plan(overlay_cidr="10.100.0.0/16", vpc_cidr="10.0.0.0/16", host_count=len(types),
                      guest_cidr="10.1.1.0/24", guest_vlans=(1000, 1999))
    host_types = HostTypes(tuple(types), running=frozenset(running))
    extra = cross_cluster_migration(host_types)
    return build_spec(plan=plan, zone_name="zone1", host_username="cloudstack", timeouts=FAST,
                      host_instance_types=types, extra_settings=extra)


def clusters_of(emu) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for h in emu.hosts.values():
        out.setdefault(h["clustername"], []).append(h["ipaddress"])
    return {k: sorted(v) for k, v in out.items()}


def test_new_type_joins_a_new_cluster_and_vms_never_cross_to_the_other_type(emulator, api_secret):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(spec_for([METAL, METAL]))
    ids_before = {h["ipaddress"]: h["id"] for h in emulator.hosts.values()}
    assert emulator.config["migrate.vm.across.clusters"] == "true"

    engine.up(spec_for([METAL, METAL, NESTED, NESTED]))
    assert clusters_of(emulator) == {"zone1-cluster-0": ["10.100.0.10", "10.100.0.11"],
                                     "zone1-cluster-1": ["10.100.0.12", "10.100.0.13"]}
    # The metal hosts were not touched: same CloudStack ids, same cluster.
    assert {ip: emulator.host_by_ip(ip)["id"] for ip in ids_before} == ids_before
    assert emulator.config["migrate.vm.across.clusters"] == "false"

    # A VM on the last nested host moves within its cluster when that host goes ...
    emulator.add_vm(emulator.host_by_ip("10.100.0.13")["id"], "vm-nested")
    engine.up(spec_for([METAL, METAL, NESTED], running=(METAL, NESTED)))
    (vm,) = [v for v in emulator.vms.values() if v["type"] == "User"]   # (the zone's system VMs aside)
    assert vm["hostid"] == emulator.host_by_ip("10.100.0.12")["id"]

    # ... but never to a metal host: removing the cluster's last host stops, nothing is
    # lost. The nested host still runs during that run, so the setting stays false even
    # though the planned hosts are all metal.
    with pytest.raises(RegistrationError) as err:
        engine.up(spec_for([METAL, METAL], running=(METAL, NESTED)))
    assert "vm-nested" in str(err.value)
    assert emulator.config["migrate.vm.across.clusters"] == "false"
    assert emulator.lost_vms == []
    assert vm["hostid"] == emulator.host_by_ip("10.100.0.12")["id"]

    # Once the VM is gone and the host with it, one type remains: migration is allowed again.
    emulator.vms.clear()
    engine.up(spec_for([METAL, METAL], running=(METAL, NESTED)))
    assert clusters_of(emulator) == {"zone1-cluster-0": ["10.100.0.10", "10.100.0.11"]}
    engine.up(spec_for([METAL, METAL], running=(METAL,)))
    assert emulator.config["migrate.vm.across.clusters"] == "true"
