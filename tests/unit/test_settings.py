"""Every validation rule of the stack settings: named key, bad value, what is accepted."""

import ipaddress

import pytest

from components.model import catalog
from components.model.settings import (
    KEYS,
    MAX_OVERLAY_MTU,
    Problem,
    SettingsError,
    parse_settings,
    supports_mysql_84,
)

VALID = {"adminCidrs": ["203.0.113.0/24"]}


def parse(**overrides):
    return parse_settings({**VALID, **overrides}, catalog.instance_facts)


def problems(**overrides) -> list[Problem]:
    with pytest.raises(SettingsError) as err:
        parse(**overrides)
    return list(err.value.problems)


def only_problem(key, **overrides) -> Problem:
    found = problems(**overrides)
    assert [p.key for p in found] == [key], found
    return found[0]


def test_defaults_are_valid_and_match_the_design():
    s = parse()
    assert s.cloudstack_version == "4.22"
    assert s.db_engine_version == "8.4"
    assert s.efs_throughput_mode == "elastic"
    assert s.host_instance_type == "c5.metal"
    assert s.overlay_mtu == MAX_OVERLAY_MTU == 8450
    assert not s.overlay_cidr.overlaps(s.vpc_cidr)
    assert s.cloudstack_subnet_cidr.subnet_of(s.vpc_cidr)
    assert s.warnings == ()


def test_every_key_has_a_default_and_a_meaning():
    for key in KEYS:
        assert key.doc.strip(), key.name
        assert key.kind in ("str", "int", "bool", "list", "object")


def test_values_arrive_as_pulumi_strings():
    s = parse_settings({"adminCidrs": '["10.0.0.0/8"]', "hostCount": "3", "dbMultiAz": "true"},
                       catalog.instance_facts)
    assert s.host_count == 3 and s.db_multi_az is True
    assert s.admin_cidrs == (ipaddress.IPv4Network("10.0.0.0/8"),)


def test_all_problems_are_reported_together():
    found = problems(vxlanId=0, overlayMtu=9001, hostCount=0, efsThroughputMode="fast")
    assert {p.key for p in found} == {"vxlanId", "overlayMtu", "hostCount", "efsThroughputMode"}


def test_error_message_names_key_value_and_what_is_accepted():
    with pytest.raises(SettingsError) as err:
        parse(overlayMtu=9001)
    text = str(err.value)
    assert "cloudstack-ec2:overlayMtu" in text and "9001" in text and "8450" in text


def test_overlay_overlapping_vpc():
    p = only_problem("overlayCidr", overlayCidr="10.0.128.0/20")
    assert "overlap" in p.message and "10.0.0.0/16" in p.message


def test_subnet_outside_vpc():
    p = only_problem("cloudstackSubnetCidr", cloudstackSubnetCidr="10.1.0.0/24")
    assert "inside vpcCidr" in p.message


def test_malformed_cidr_names_the_key():
    p = only_problem("vpcCidr", vpcCidr="10.0.0.0/33", cloudstackSubnetCidr="10.0.0.0/24")
    assert "IPv4 CIDR" in p.message


@pytest.mark.parametrize("group", ["10.1.2.3", "192.168.0.1", "not-an-ip", "224.0.0.5"])
def test_multicast_group_must_be_multicast(group):
    p = only_problem("multicastGroup", multicastGroup=group)
    assert "239.255.0.0/16" in p.message


def test_multicast_outside_local_scope_warns():
    s = parse(multicastGroup="239.1.2.3")
    assert any("239.255.0.0/16" in w for w in s.warnings)


@pytest.mark.parametrize("key,value", [
    ("routerInstanceType", "t2.medium"),
    ("managementInstanceType", "m4.large"),
])
def test_router_and_management_must_be_nitro(key, value):
    p = only_problem(key, **{key: value})
    assert "Nitro" in p.message and "multicast" in p.message


def test_host_must_be_metal():
    p = only_problem("hostInstanceType", hostInstanceType="m6i.xlarge")
    assert "metal" in p.message


def test_metal_counts_as_nitro_for_every_role():
    s = parse(managementInstanceType="m5zn.metal", hostInstanceType="m5zn.metal")
    assert s.management_instance_type == "m5zn.metal"


def test_arm_types_are_refused():
    p = only_problem("hostInstanceType", hostInstanceType="c6g.metal")
    assert "x86_64" in p.message


def test_unknown_instance_type_names_the_key():
    p = only_problem("hostInstanceType", hostInstanceType="zz9.metal")
    assert "not an instance type" in p.message


def test_instance_lookup_is_what_decides():
    """A new type works without a code change: the answer comes from the lookup (AWS)."""
    from components.model.settings import InstanceFacts

    def lookup(name):
        return InstanceFacts(name, "", True, ("x86_64",), 192, 786432)

    s = parse_settings({**VALID, "hostInstanceType": "c9z.metal-48xl"}, lookup)
    assert s.host_instance_type == "c9z.metal-48xl"


def test_host_count_below_one():
    only_problem("hostCount", hostCount=0)


def test_host_count_beyond_overlay_room():
    p = only_problem("hostCount", hostCount=60, overlayCidr="10.100.0.0/24")
    assert "room for 52 hosts" in p.message


def test_host_count_beyond_multicast_group_limit():
    p = only_problem("hostCount", hostCount=99)
    assert "100" in p.message and "Transit Gateway" in p.message
    assert parse(hostCount=98).host_count == 98


def test_admin_cidrs_required():
    p = only_problem("adminCidrs", adminCidrs=[])
    assert "adminCidrs[0]" in p.message


def test_admin_cidrs_malformed():
    p = only_problem("adminCidrs", adminCidrs=["10.0.0.1/8"])
    assert "not an IPv4 CIDR" in p.message


def test_admin_cidrs_world_needs_opt_in():
    p = only_problem("adminCidrs", adminCidrs=["0.0.0.0/0"])
    assert "allowPublicAdminAccess" in p.message
    assert parse(adminCidrs=["0.0.0.0/0"], allowPublicAdminAccess=True).allow_public_admin_access


@pytest.mark.parametrize("mtu", [8451, 9001, 1279, 576])
def test_overlay_mtu_bounds(mtu):
    p = only_problem("overlayMtu", overlayMtu=mtu)
    assert "8450" in p.message and "1280" in p.message


@pytest.mark.parametrize("mtu", [1280, 1500, 8450])
def test_overlay_mtu_accepted(mtu):
    assert parse(overlayMtu=mtu).overlay_mtu == mtu


@pytest.mark.parametrize("vni", [0, 16777216, -1])
def test_vxlan_id_bounds(vni):
    only_problem("vxlanId", vxlanId=vni)


@pytest.mark.parametrize("vni", [1, 100, 16777215])
def test_vxlan_id_accepted(vni):
    assert parse(vxlanId=vni).vxlan_id == vni


@pytest.mark.parametrize("mode", ["bursting", "fast", ""])
def test_efs_throughput_mode(mode):
    if mode == "":
        assert parse(efsThroughputMode=mode).efs_throughput_mode == "elastic"  # empty: the default
        return
    p = only_problem("efsThroughputMode", efsThroughputMode=mode)
    assert "elastic" in p.message and "provisioned" in p.message


def test_efs_provisioned_needs_a_rate():
    only_problem("efsProvisionedMibps", efsThroughputMode="provisioned", efsProvisionedMibps=0)


@pytest.mark.parametrize("version", ["5.7", "8.1", "9.0", "mariadb"])
def test_db_engine_version_must_be_supported_major(version):
    p = only_problem("dbEngineVersion", dbEngineVersion=version)
    assert "8.4" in p.message and "8.0" in p.message


def test_aurora_refused_with_reason():
    p = only_problem("dbEngineVersion", dbEngineVersion="aurora-mysql")
    assert "MyISAM" in p.message


def test_mysql_84_needs_a_release_that_supports_it():
    p = only_problem("dbEngineVersion", cloudstackVersion="4.19", dbEngineVersion="8.4")
    assert "4.20.3" in p.message
    p = only_problem("dbEngineVersion", cloudstackVersion="4.20.2", dbEngineVersion="8.4")
    assert parse(cloudstackVersion="4.20.3", dbEngineVersion="8.4").db_engine_version == "8.4"


def test_mysql_80_warns_about_extended_support_cost():
    s = parse(dbEngineVersion="8.0")
    assert any("Extended Support" in w and "$" in w for w in s.warnings)
    assert parse(cloudstackVersion="4.19", dbEngineVersion="8.0").cloudstack_version == "4.19"


@pytest.mark.parametrize("version,expected", [
    ("4.22", True), ("4.21", True), ("4.20", True), ("4.20.3", True), ("4.20.2", False), ("4.19", False),
    ("4.19.3", False), ("5.0", True), ("junk", False),
])
def test_supports_mysql_84(version, expected):
    assert supports_mysql_84(version) is expected


@pytest.mark.parametrize("version", ["4.18", "4.24", "latest", "4"])
def test_cloudstack_version_must_be_known(version):
    p = only_problem("cloudstackVersion", cloudstackVersion=version, dbEngineVersion="8.0")
    assert "4.22" in p.message and "4.23" in p.message


def test_unknown_key_is_refused_with_a_hint():
    p = only_problem("hostcount", hostcount=3)
    assert "hostCount" in p.message


def test_hosts_per_cluster_bounds():
    only_problem("hostsPerCluster", hostsPerCluster=17)
    only_problem("hostsPerCluster", hostsPerCluster=0)


def test_clusters_follow_hosts_per_cluster():
    s = parse(hostCount=20, hostsPerCluster=16)
    assert s.cluster_count == 2
    assert [s.cluster_of_host(i) for i in (0, 15, 16, 19)] == [0, 0, 1, 1]


def test_guest_vlan_range():
    only_problem("guestVlanRange", guestVlanRange="0-10")
    only_problem("guestVlanRange", guestVlanRange="200-100")
    only_problem("guestVlanRange", guestVlanRange="100-5000")
    assert parse(guestVlanRange="100-199").guest_vlan_range == (100, 199)


def test_guest_vlan_range_must_leave_the_agents_bridge_names_within_15_characters(monkeypatch):
    # The KVM agent names VLAN n's bridge br<port>-<n> (BridgeVifDriver); Linux
    # allows 15 characters. The overlay port leaves room for every VLAN ...
    assert parse(guestVlanRange="1-4094").guest_vlan_range == (1, 4094)
    # ... which is what the check guards: the former name broke the default range.
    from components.model import linuxdevices
    monkeypatch.setattr(linuxdevices, "OVERLAY_PORT", "ethvxlan0")
    problem = only_problem("guestVlanRange")
    assert problem.value == "1000-1999"
    assert "brethvxlan0-1999" in problem.message and "15 characters" in problem.message
    assert parse(guestVlanRange="100-999").guest_vlan_range == (100, 999)


def test_guest_cidr_must_not_overlap():
    only_problem("guestCidr", guestCidr="10.100.5.0/24")


def test_guest_cidr_must_be_private():
    # NetUtils.validateGuestCidr: RFC 1918 or RFC 6598 only (checked before anything is created)
    only_problem("guestCidr", guestCidr="203.0.113.0/24")
    assert str(parse(guestCidr="100.64.8.0/24").guest_cidr) == "100.64.8.0/24"


def test_existing_vpc_needs_subnets():
    found = problems(vpcId="vpc-0123456789abcdef0")
    assert {p.key for p in found} == {"cloudstackSubnetId", "dbSubnetIds", "routeTableIds"}
    s = parse(vpcId="vpc-0123456789abcdef0", cloudstackSubnetId="subnet-0123456789abcdef0",
              dbSubnetIds=["subnet-0123456789abcdef1", "subnet-0123456789abcdef2"],
              routeTableIds=["rtb-0123456789abcdef0"])
    assert s.uses_existing_vpc


def test_subnet_ids_without_vpc_id():
    only_problem("vpcId", cloudstackSubnetId="subnet-0123456789abcdef0")


def test_db_subnets_are_derived_clear_of_the_dedicated_subnet():
    s = parse()
    assert len(s.db_subnet_cidrs) == 2
    for net in s.db_subnet_cidrs:
        assert net.subnet_of(s.vpc_cidr)
        assert not net.overlaps(s.cloudstack_subnet_cidr)


def test_explicit_db_subnets_checked():
    only_problem("dbSubnetCidrs", dbSubnetCidrs=["10.0.0.0/25", "10.0.9.0/24"])
    only_problem("dbSubnetCidrs", dbSubnetCidrs=["10.0.9.0/24"])


def test_zone_name_is_a_safe_directory_name():
    only_problem("zoneName", zoneName="../etc")
    only_problem("zoneName", zoneName="zone one")


def test_type_errors_name_the_key():
    only_problem("hostCount", hostCount="three")
    only_problem("dbMultiAz", dbMultiAz="yes")
    only_problem("adminCidrs", adminCidrs="10.0.0.0/8")


# --- availability zones ---------------------------------------------------------------

from components.model.settings import choose_availability_zones  # noqa: E402

ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]
EVERYWHERE = {t: set(ZONES) for t in ("c5n.large", "m6i.xlarge", "c5.metal")}


def test_az_defaults_to_the_first_that_offers_every_type():
    offered = {**EVERYWHERE, "c5.metal": {"us-east-1b", "us-east-1c"}}
    assert choose_availability_zones(parse(), ZONES, offered) == ("us-east-1b", "us-east-1a")


def test_requested_az_must_offer_every_type():
    offered = {**EVERYWHERE, "c5.metal": {"us-east-1c"}}
    with pytest.raises(SettingsError) as err:
        choose_availability_zones(parse(availabilityZone="us-east-1a"), ZONES, offered)
    [p] = err.value.problems
    assert p.key == "availabilityZone" and "c5.metal (hostInstanceType)" in p.message and "us-east-1c" in p.message
    assert choose_availability_zones(parse(availabilityZone="us-east-1c"), ZONES, offered)[0] == "us-east-1c"


def test_no_az_with_every_type_names_the_host_type():
    offered = {**EVERYWHERE, "c5.metal": set()}
    with pytest.raises(SettingsError) as err:
        choose_availability_zones(parse(), ZONES, offered)
    assert err.value.problems[0].key == "hostInstanceType"


def test_unknown_requested_az():
    with pytest.raises(SettingsError, match="availabilityZone"):
        choose_availability_zones(parse(availabilityZone="us-east-1z"), ZONES, EVERYWHERE)


def test_the_database_gets_a_second_az():
    primary, second = choose_availability_zones(parse(availabilityZone="us-east-1b"), ZONES, EVERYWHERE)
    assert (primary, second) == ("us-east-1b", "us-east-1a")
    with pytest.raises(SettingsError, match="second AZ"):
        choose_availability_zones(parse(), ["us-east-1a"], {t: {"us-east-1a"} for t in EVERYWHERE})


def test_an_existing_subnet_decides_the_az():
    existing = parse(vpcId="vpc-0123456789abcdef0", cloudstackSubnetId="subnet-0123456789abcdef0",
                     dbSubnetIds=["subnet-0123456789abcdef1", "subnet-0123456789abcdef2"],
                     routeTableIds=["rtb-0123456789abcdef0"])
    assert choose_availability_zones(existing, ZONES, EVERYWHERE, "us-east-1c")[0] == "us-east-1c"
    offered = {**EVERYWHERE, "c5.metal": {"us-east-1a"}}
    with pytest.raises(SettingsError, match="c5.metal"):
        choose_availability_zones(existing, ZONES, offered, "us-east-1c")
    from dataclasses import replace
    with pytest.raises(SettingsError, match="is in us-east-1c"):
        choose_availability_zones(replace(existing, availability_zone="us-east-1a"), ZONES, EVERYWHERE, "us-east-1c")


def test_cloudstack_4_19_0_is_refused_for_its_host_ssh_key():
    problem = only_problem("cloudstackVersion", cloudstackVersion="4.19.0", dbEngineVersion="8.0")
    assert problem.value == "4.19.0" and "4.19.1" in problem.message and "SHA-1" in problem.message
    assert parse(cloudstackVersion="4.19.1", dbEngineVersion="8.0").cloudstack_version == "4.19.1"
    assert parse(cloudstackVersion="4.19", dbEngineVersion="8.0").cloudstack_version == "4.19"
# --- tenantVpcAccessCidrs (tenant isolation) -------------------------------------


def test_tenant_vpc_access_is_empty_by_default_and_takes_cidrs():
    assert parse().tenant_vpc_access_cidrs == ()
    s = parse(tenantVpcAccessCidrs=["10.0.8.0/24", "192.168.40.0/22"])
    assert [str(n) for n in s.tenant_vpc_access_cidrs] == ["10.0.8.0/24", "192.168.40.0/22"]


@pytest.mark.parametrize("value, words", [
    ("10.0.8.1/24", "is not an IPv4 CIDR"),
    ("0.0.0.0/0", "is everything"),
    ("10.0.0.0/16", "cloudstackSubnetCidr"),          # the whole VPC holds the dedicated subnet
    ("10.0.0.128/25", "cloudstackSubnetCidr"),        # EFS mount target and the instances
    ("10.0.255.0/24", "dbSubnetCidrs"),               # carved from the top of the default VPC
    ("10.100.0.0/24", "overlayCidr"),
    ("169.254.169.254/32", "instance metadata"),
])
def test_tenant_vpc_access_never_opens_what_isolation_protects(value, words):
    p = only_problem("tenantVpcAccessCidrs", tenantVpcAccessCidrs=[value])
    assert words in p.message and value in p.message


# --- vmForwards (services offered from VMs) --------------------------------------------


def test_vm_forwards_are_empty_by_default_and_parse():
    assert parse().vm_forwards == ()
    s = parse(vmForwards=["tcp:2222:10.100.128.5:22@203.0.113.0/24,198.51.100.7/32",
                          "udp:5353:10.100.128.9:53@anywhere"])
    first, second = s.vm_forwards
    assert first.dnat == "tcp:2222:10.100.128.5:22"
    assert [str(n) for n in first.sources] == ["203.0.113.0/24", "198.51.100.7/32"]
    assert second.dnat == "udp:5353:10.100.128.9:53" and [str(n) for n in second.sources] == ["0.0.0.0/0"]


@pytest.mark.parametrize("entries, words", [
    (["tcp:2222:10.100.128.5:22"], "expected proto:port:target:targetPort@sources"),
    (["icmp:1:10.100.128.5:1@anywhere"], "expected proto:port:target:targetPort@sources"),
    (["tcp:70000:10.100.128.5:22@anywhere"], "ports must be 1..65535"),
    (["tcp:8080:10.100.128.5:80@anywhere"], "port 8080 is reserved"),
    (["tcp:80:10.100.128.5:80@anywhere"], "port 80 is reserved"),
    (["tcp:2222:10.100.0.2:22@anywhere"], "must be in the public range"),    # the management server
    (["tcp:2222:10.100.64.1:22@anywhere"], "must be in the public range"),   # a system VM
    (["tcp:2222:10.100.128.5:22@0.0.0.0/0"], "write 'anywhere'"),
    (["tcp:2222:10.100.128.5:22@203.0.113.1/24"], "is not an IPv4 CIDR"),
    (["tcp:2222:10.100.128.5:22@anywhere", "tcp:2222:10.100.128.6:22@anywhere"], "already forwarded"),
])
def test_bad_vm_forwards_are_refused_naming_the_entry(entries, words):
    p = only_problem("vmForwards", vmForwards=entries)
    assert words in p.message and entries[-1] in p.message, p.message


def test_the_same_port_may_be_forwarded_once_per_protocol():
    s = parse(vmForwards=["tcp:5000:10.100.128.5:5000@anywhere", "udp:5000:10.100.128.5:5000@anywhere"])
    assert len(s.vm_forwards) == 2
