"""The pure parts: spec validation, clusters per hostsPerCluster, the plan's order."""

from __future__ import annotations

import pytest
from registration_specs import make_spec

from components.registration.plan import Deferred, Ref, plan_registration
from components.registration.spec import (
    EFS_NFS_MOUNT_OPTIONS, ClusterSpec, HostSpec, PodSpec, SpecError, Timeouts, ZoneSpec, clusters_for,
    default_global_settings,
)


def test_clusters_follow_hosts_per_cluster():
    assert clusters_for(1) == [0]
    assert clusters_for(20, 16) == [0] * 16 + [1] * 4
    assert clusters_for(5, 2) == [0, 0, 1, 1, 2]
    with pytest.raises(SpecError, match=r"hosts_per_cluster=17 .* 1\.\.16"):
        clusters_for(3, 17)
    with pytest.raises(SpecError, match="host_count=0"):
        clusters_for(0)


@pytest.mark.parametrize("make, field", [
    (lambda: ZoneSpec("zone 1", "10.0.0.2", "10.0.0.2", "10.1.1.0/24"), "zone.name"),
    (lambda: ZoneSpec("z", "169.254.169.253", "10.0.0.2", "10.1.1.0/24"), "zone.dns1"),
    (lambda: ZoneSpec("z", "10.0.0.2", "10.0.0.2", "10.1.1.1/24"), "zone.guest_cidr"),
    (lambda: ZoneSpec("z", "10.0.0.2", "10.0.0.2", "8.8.8.0/24"), "zone.guest_cidr"),       # not private
    (lambda: ZoneSpec("z", "10.0.0.2", "10.0.0.2", "100.128.0.0/24"), "zone.guest_cidr"),   # past 100.64/10
    (lambda: PodSpec("p", "10.100.0.1", "255.255.0.0", "10.100.64.9", "10.100.64.1"), "pod.start_ip/end_ip"),
    (lambda: PodSpec("p", "10.100.0.1", "255.255.0.0", "10.200.0.1", "10.200.0.9"), "pod.start_ip"),
    (lambda: HostSpec(0, "10.100.0.300", 0, "cloudstack"), "hosts[0].overlay_ip"),
    (lambda: HostSpec(0, "10.100.0.10", 0, "Bad User"), "hosts[0].username"),
    (lambda: Timeouts(api_wait=0), "timeouts.api_wait"),
])
def test_bad_input_names_the_field_and_value(make, field):
    with pytest.raises(SpecError) as e:
        make()
    assert f"{field}=" in str(e.value) and "invalid" in str(e.value)


def test_private_guest_cidrs_are_accepted():
    for cidr in ("10.1.1.0/24", "172.16.5.0/24", "192.168.0.0/24", "100.64.3.0/24"):
        assert ZoneSpec("z", "10.0.0.2", "10.0.0.2", cidr).guest_cidr == cidr


def test_spec_level_checks():
    spec = make_spec(3, hosts_per_cluster=2)
    import dataclasses
    with pytest.raises(SpecError, match=r"public_range.start_ip/end_ip=.*overlap the pod's reserved system range"):
        dataclasses.replace(spec, public_range=dataclasses.replace(spec.public_range, start_ip="10.100.64.200",
                                                                   end_ip="10.100.65.10"))
    with pytest.raises(SpecError, match="cluster_index"):
        dataclasses.replace(spec, hosts=spec.hosts + (HostSpec(9, "10.100.0.99", 7, "u"),))
    with pytest.raises(SpecError, match="overlay addresses must be unique"):
        dataclasses.replace(spec, hosts=spec.hosts + (HostSpec(9, "10.100.0.10", 0, "u"),))
    with pytest.raises(SpecError, match="every cluster needs at least one host"):
        dataclasses.replace(spec, clusters=spec.clusters + (ClusterSpec(5, "zone1-cluster-5"),))
    with pytest.raises(SpecError, match="at most 16"):
        dataclasses.replace(spec, clusters=(ClusterSpec(0, "c"),),
                            hosts=tuple(HostSpec(i, f"10.100.1.{i}", 0, "u") for i in range(17)))


def test_global_settings_are_the_ones_the_zone_needs():
    s = {g.name: g.value for g in default_global_settings("10.100.0.2", "10.100.0.0/16")}
    assert s == {"storage.overprovisioning.factor": "1", "host": "10.100.0.2",
                 "management.network.cidr": "10.100.0.0/16", "migrate.vm.across.clusters": "true",
                 "vr.public.interface.max.mtu": "8446", "vr.private.interface.max.mtu": "8446",
                 # one console proxy per zone: the router forwards to one
                 "consoleproxy.launch.max": "1",
                 # the system VMs' public range is theirs alone, whatever the release
                 "system.vm.public.ip.reservation.mode.strictness": "true",
                 # agents spread over the servers (one server: the same list for all)
                 "indirect.agent.lb.algorithm": "roundrobin"}
    assert all(g.why for g in default_global_settings("10.100.0.2", "10.100.0.0/16"))


def test_host_lists_every_management_server_first_first():
    s = {g.name: g.value for g in default_global_settings(("10.100.0.2", "10.100.0.3"), "10.100.0.0/16")}
    assert s["host"] == "10.100.0.2,10.100.0.3" and s["indirect.agent.lb.algorithm"] == "roundrobin"
    with pytest.raises(SpecError, match=r"management_ip\[1\]"):
        default_global_settings(("10.100.0.2", "not-an-address"), "10.100.0.0/16")
    with pytest.raises(SpecError, match="management_ip"):
        default_global_settings((), "10.100.0.0/16")


def test_guest_facing_mtus_leave_room_for_the_vlan_tag():
    # A tagged frame inside VXLAN: overlay MTU + 4 + 50 must stay within the
    # Transit Gateway's 8500 bytes, whatever overlayMtu is.
    for overlay_mtu in (1450, 8450):
        s = {g.name: g.value for g in default_global_settings("10.100.0.2", "10.100.0.0/16", overlay_mtu)}
        for key in ("vr.public.interface.max.mtu", "vr.private.interface.max.mtu"):
            assert int(s[key]) == overlay_mtu - 4
    with pytest.raises(SpecError, match="overlay_mtu"):
        default_global_settings("10.100.0.2", "10.100.0.0/16", 9001)


def test_default_timeouts_allow_a_real_first_boot():
    t = Timeouts()
    assert t.secret_wait >= 45 * 60 and t.api_wait >= 45 * 60 and t.maintenance >= 30 * 60


def test_plan_order_and_dependencies():
    plan = plan_registration(make_spec(20))
    names = [p.name for p in plan]
    idx = names.index
    assert names[0] == "zone" and names[-3:] == ["zone-enable", "console-forwards", "workload-guard"]
    assert idx("physical-network") < idx("traffic-guest") < idx("provider-virtualrouter") < idx("pod") \
        < idx("public-range") < idx("system-public-range") < idx("cluster-0") < idx("hosts-0") \
        < idx("primary-storage") < idx("image-store")
    assert idx("cluster-1") < idx("image-store") and idx("setting-host") < idx("hosts-0")
    by = {p.name: p for p in plan}
    # one resource per cluster, carrying its hosts and depending on their instances
    assert [n for n in names if n.startswith("host")] == ["hosts-0", "hosts-1"]
    assert by["hosts-1"].props["clusterid"] == Ref("cluster-1") and by["hosts-1"].host_indexes == (16, 17, 18, 19)
    assert by["hosts-0"].host_indexes == tuple(range(16))
    assert by["hosts-1"].props["hosts"][1] == {"index": 17, "ipaddress": "10.100.0.27",
                                               "instance": Deferred("instance-17")}
    assert "hosts-0" in by["primary-storage"].refs()
    assert "cluster-0" in by["image-store"].refs()
    assert by["primary-storage"].props["url"] == Deferred("efs_dns", "nfs://", "/zone1/primary")
    assert by["image-store"].props["url"] == Deferred("efs_dns", "nfs://", "/zone1/secondary")
    hosts = by["hosts-0"].props
    assert hosts["username"] == "cloudstack" and "password" not in hosts
    for p in plan:
        assert p.props["endpoint"] == Deferred("endpoint") and p.props["secret_id"] == Deferred("secret_id")
        assert not any("secretkey" in k or "password" in k for k in p.props)


def test_the_system_vms_public_range_is_registered_for_system_vms():
    spec = make_spec(1)
    by = {p.name: p for p in plan_registration(spec)}
    sys, pub = by["system-public-range"], by["public-range"]
    assert sys.kind == pub.kind == "public_ip_range"
    assert (sys.props["startip"], sys.props["endip"]) == ("10.100.192.1", "10.100.192.8")
    assert sys.props["forsystemvms"] is True and "forsystemvms" not in pub.props
    for key in ("gateway", "netmask", "vlan", "zoneid", "physicalnetworkid", "forvirtualnetwork"):
        assert sys.props[key] == pub.props[key], key
    assert "public-range" in sys.refs()
    # the zone is enabled (system VMs launched) only once the range exists; the console forwards know it
    assert "system-public-range" in by["zone-enable"].refs()
    assert by["console-forwards"].props["system_public_range"] == "10.100.192.1-10.100.192.8"
    assert "system-public-range" in by["console-forwards"].refs()


def test_the_system_vms_public_range_is_checked():
    import dataclasses
    spec = make_spec(1)
    sys = spec.system_public_range
    with pytest.raises(SpecError, match=r"system_public_range.start_ip/end_ip=.*overlap the public range"):
        dataclasses.replace(spec, system_public_range=dataclasses.replace(
            sys, start_ip="10.100.128.5", end_ip="10.100.128.9"))
    with pytest.raises(SpecError, match=r"system_public_range.start_ip/end_ip=.*pod's reserved system range"):
        dataclasses.replace(spec, system_public_range=dataclasses.replace(
            sys, start_ip="10.100.64.5", end_ip="10.100.64.9"))
    with pytest.raises(SpecError, match=r"system_public_range.vlan='7'.*the public range's vlan"):
        dataclasses.replace(spec, system_public_range=dataclasses.replace(sys, vlan="7"))
    with pytest.raises(SpecError, match=r"system_public_range.for_system_vms=False"):
        dataclasses.replace(spec, system_public_range=dataclasses.replace(sys, for_system_vms=False))
    with pytest.raises(SpecError, match=r"public_range.for_system_vms=True"):
        dataclasses.replace(spec, public_range=dataclasses.replace(spec.public_range, for_system_vms=True))
    with pytest.raises(SpecError, match=r"system_public_range.start_ip=.*inside the public network"):
        dataclasses.replace(sys, start_ip="10.99.0.1")
    # without one (a duck-typed plan without the range): nothing planned, the kind checks nothing
    plain = dataclasses.replace(spec, system_public_range=None)
    by = {p.name: p for p in plan_registration(plain)}
    assert "system-public-range" not in by and by["console-forwards"].props["system_public_range"] == ""


def test_primary_storage_mount_options_are_checked_like_cloudstack_does():
    import dataclasses
    spec = make_spec(1)
    assert spec.storage.primary_nfs_mount_options == EFS_NFS_MOUNT_OPTIONS
    for bad in ("vers=4.1,vers=4.2", "vers=4.1=2", "hard,,noresvport", "vers=4.1; rm -rf /"):
        with pytest.raises(SpecError, match="primary_nfs_mount_options"):
            dataclasses.replace(spec.storage, primary_nfs_mount_options=bad)
    primary = next(r for r in plan_registration(spec) if r.name == "primary-storage")
    assert primary.props["nfsmountopts"] == EFS_NFS_MOUNT_OPTIONS
