"""Properties of the overlay IP plan over random CIDRs and host counts (hypothesis)."""

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.model import ipplan

VPC = "10.0.0.0/16"


@st.composite
def overlays(draw):
    prefix = draw(st.integers(ipplan.MIN_OVERLAY_PREFIX, ipplan.MAX_OVERLAY_PREFIX))
    base = draw(st.integers(0, 2**32 - 1))
    return ipaddress.IPv4Network((base, prefix), strict=False)


@st.composite
def plans(draw):
    overlay = draw(overlays())
    # Counts near the realistic limit (98, the multicast group bound) and, for small
    # overlays, up to their capacity.
    count = draw(st.integers(0, min(ipplan.host_capacity(overlay), 300)))
    plan = ipplan.build_plan(overlay_cidr=str(overlay), vpc_cidr=VPC, host_count=count,
                             guest_cidr="172.31.0.0/24", guest_vlans=(100, 199))
    return plan


def reserved(plan):
    return {plan.overlay.network_address, plan.overlay.broadcast_address}


@settings(max_examples=300, deadline=None)
@given(plans())
def test_every_address_inside_overlay_and_never_network_or_broadcast(plan):
    for name, address in plan.all_named_addresses():
        assert address in plan.overlay, name
        assert address not in reserved(plan), name
    for r in (plan.system_range, plan.public_range, plan.system_public_range):
        assert r.start in plan.overlay and r.end in plan.overlay
        assert r.start <= r.end
        assert plan.overlay.network_address not in r and plan.overlay.broadcast_address not in r


@settings(max_examples=300, deadline=None)
@given(plans())
def test_no_overlaps(plan):
    singles = [a for _, a in plan.all_named_addresses()]
    assert len(singles) == len(set(singles))
    ranges = (plan.system_range, plan.public_range, plan.system_public_range)
    for i, r in enumerate(ranges):
        for other in ranges[i + 1:]:
            assert not r.overlaps(other)
    for address in singles:
        for r in ranges:
            assert address not in r


@settings(max_examples=200, deadline=None)
@given(overlays(), st.data())
def test_host_addresses_are_stable_when_hosts_come_and_go(overlay, data):
    capacity = min(ipplan.host_capacity(overlay), 300)
    a = data.draw(st.integers(0, capacity))
    b = data.draw(st.integers(0, capacity))
    small, large = sorted((a, b))

    def plan(n):
        return ipplan.build_plan(overlay_cidr=str(overlay), vpc_cidr=VPC, host_count=n,
                                 guest_cidr="172.31.0.0/24", guest_vlans=(1, 2))

    assert plan(large).hosts[:small] == plan(small).hosts
    assert plan(large).router == plan(small).router
    assert plan(large).system_range == plan(small).system_range
    assert plan(large).system_public_range == plan(small).system_public_range


@settings(max_examples=200, deadline=None)
@given(overlays())
def test_ranges_are_bounded_and_useful(overlay):
    plan = ipplan.build_plan(overlay_cidr=str(overlay), vpc_cidr=VPC, host_count=0,
                             guest_cidr="172.31.0.0/24", guest_vlans=(1, 2))
    assert 1 <= plan.system_range.size <= ipplan.SYSTEM_RANGE_MAX
    assert 1 <= plan.public_range.size <= ipplan.PUBLIC_RANGE_MAX
    assert plan.system_public_range.size == ipplan.SYSTEM_PUBLIC_RANGE_SIZE
    assert plan.host_capacity >= 52


@settings(max_examples=200, deadline=None)
@given(overlays())
def test_the_system_public_range_opens_block_3(overlay):
    plan = ipplan.build_plan(overlay_cidr=str(overlay), vpc_cidr=VPC, host_count=0,
                             guest_cidr="172.31.0.0/24", guest_vlans=(1, 2))
    block3 = ipplan.overlay_blocks(overlay)[3]
    assert plan.system_public_range.start == block3.network_address + 1
    assert plan.system_public_range.end == block3.network_address + ipplan.SYSTEM_PUBLIC_RANGE_SIZE
    assert plan.system_public_range.end < block3.broadcast_address


def test_the_system_public_range_of_the_default_overlay():
    plan = ipplan.build_plan(overlay_cidr="10.100.0.0/16", vpc_cidr=VPC, host_count=1,
                             guest_cidr="10.1.1.0/24", guest_vlans=(1, 2))
    assert str(plan.system_public_range) == "10.100.192.1-10.100.192.8"


def test_router_is_the_first_address_and_the_gateway():
    plan = ipplan.build_plan(overlay_cidr="10.100.0.0/16", vpc_cidr=VPC, host_count=3,
                             guest_cidr="10.1.1.0/24", guest_vlans=(1000, 1999))
    assert str(plan.router) == str(plan.gateway) == "10.100.0.1"
    assert [str(a) for a in plan.management_servers] == ["10.100.0.2"]
    assert [str(a) for a in plan.hosts] == ["10.100.0.10", "10.100.0.11", "10.100.0.12"]
    assert plan.overlay_interface(plan.router) == "10.100.0.1/16"
    assert str(plan.netmask) == "255.255.0.0"


@pytest.mark.parametrize("vpc,dns", [("10.0.0.0/16", "10.0.0.2"), ("172.16.32.0/20", "172.16.32.2")])
def test_zone_dns_is_vpc_base_plus_two(vpc, dns):
    plan = ipplan.build_plan(overlay_cidr="10.100.0.0/16", vpc_cidr=vpc, host_count=1,
                             guest_cidr="10.1.1.0/24", guest_vlans=(1, 2))
    assert str(plan.zone_dns) == dns
    assert not plan.zone_dns.is_link_local


def test_too_many_hosts_is_refused():
    overlay = ipaddress.IPv4Network("10.100.0.0/24")
    with pytest.raises(ValueError, match="host_count"):
        ipplan.build_plan(overlay_cidr=str(overlay), vpc_cidr=VPC, host_count=ipplan.host_capacity(overlay) + 1,
                          guest_cidr="10.1.1.0/24", guest_vlans=(1, 2))
    with pytest.raises(ValueError):
        ipplan.host_address(overlay, ipplan.host_capacity(overlay))


@settings(max_examples=200, deadline=None)
@given(st.integers(8, 24), st.data())
def test_db_subnets_inside_vpc_and_clear_of_the_dedicated_subnet(vpc_prefix, data):
    vpc = ipaddress.IPv4Network(f"10.0.0.0/{vpc_prefix}")
    sub_prefix = data.draw(st.integers(vpc_prefix + 1, 28))
    slots = 2 ** (sub_prefix - vpc_prefix)
    k = data.draw(st.integers(0, slots - 1))
    dedicated = ipaddress.IPv4Network((int(vpc.network_address) + k * 2 ** (32 - sub_prefix), sub_prefix))
    nets = ipplan.carve_db_subnets(str(vpc), [str(dedicated)])
    assert len(nets) == 2 and not nets[0].overlaps(nets[1])
    for n in nets:
        assert n.subnet_of(vpc) and not n.overlaps(dedicated) and n.prefixlen <= 28


# --- address classes (tenant isolation) ----------------------------------------


@settings(max_examples=300, deadline=None)
@given(plans())
def test_address_classes_put_every_plan_address_in_its_class(plan):
    classes = plan.classes
    assert classes.classify(plan.router) == ipplan.INFRASTRUCTURE
    for address in (*plan.management_servers, *plan.hosts):
        assert classes.classify(address) == ipplan.INFRASTRUCTURE
    for address in plan.management_servers:
        assert address in classes.management and address not in classes.hosts
    for address in plan.hosts:
        assert address in classes.hosts and address not in classes.management
    assert plan.router not in classes.management and plan.router not in classes.hosts
    for r in (plan.system_range,):
        assert classes.classify(r.start) == classes.classify(r.end) == ipplan.SYSTEM
    # The public range (tenants' virtual routers) is never infrastructure or system.
    for address in (plan.public_range.start, plan.public_range.end):
        assert classes.classify(address) == ipplan.TENANT


@settings(max_examples=200, deadline=None)
@given(overlays())
def test_every_host_slot_is_infrastructure_whatever_the_host_count(overlay):
    # The firewalls are written once at boot: a host added later must already be
    # inside the class the others admit.
    classes = ipplan.address_classes(overlay)
    last = ipplan.host_address(overlay, ipplan.host_capacity(overlay) - 1)
    assert last == classes.hosts.end and classes.classify(last) == ipplan.INFRASTRUCTURE
    assert classes.hosts.size == ipplan.host_capacity(overlay)
    assert classes.management.size == ipplan.MANAGEMENT_SLOTS


def test_address_classes_of_the_default_overlay():
    classes = ipplan.address_classes(ipaddress.IPv4Network("10.100.0.0/16"))
    assert str(classes.infrastructure) == "10.100.0.0/18"
    assert str(classes.management) == "10.100.0.2-10.100.0.9"
    assert str(classes.hosts) == "10.100.0.10-10.100.63.253"
    assert str(classes.system) == "10.100.64.1-10.100.64.250"
    # block 3: the system VMs' public range (public NICs, like the virtual routers': not the
    # pod's system range) and the spare rest
    assert classes.classify(ipaddress.IPv4Address("10.100.192.7")) == ipplan.TENANT
    assert classes.classify(ipaddress.IPv4Address("10.100.200.1")) == ipplan.TENANT
    assert classes.classify(ipaddress.IPv4Address("10.0.0.5")) == ipplan.OUTSIDE


def test_an_address_range_parses_what_str_writes_and_nothing_else():
    span = ipplan.system_public_range(ipaddress.IPv4Network("10.100.0.0/16"))
    assert ipplan.AddressRange.parse(str(span)) == span and span.size == 8
    for bad in ("10.100.192.8-10.100.192.1", "10.100.192.1", "10.100.192.1-", "10.100.192.1-10.100.192.x"):
        with pytest.raises(ValueError):
            ipplan.AddressRange.parse(bad)


@settings(max_examples=200, deadline=None)
@given(overlays())
def test_router_pair_addresses_are_infrastructure_and_never_a_host_or_range(overlay):
    # Each router of a pair keeps its own overlay address; neither may ever be a KVM
    # host's slot, the gateway, a management slot or an address CloudStack hands out.
    plan = ipplan.build_plan(overlay_cidr=str(overlay), vpc_cidr=VPC, host_count=min(ipplan.host_capacity(overlay), 300),
                             guest_cidr="10.1.0.0/16", guest_vlans=(100, 200))
    classes = plan.classes
    pair = [ipplan.router_pair_address(overlay, i) for i in (0, 1)]
    assert pair[0] + 1 == pair[1] == classes.infrastructure.broadcast_address
    for address in pair:
        assert classes.classify(address) == ipplan.INFRASTRUCTURE
        assert address != plan.gateway and address not in plan.hosts
        assert address not in classes.hosts and address not in classes.management
        for span in (plan.system_range, plan.public_range, plan.system_public_range):
            assert address not in span


def test_router_pair_addresses_of_the_default_overlay():
    overlay = ipaddress.IPv4Network("10.100.0.0/16")
    assert [str(ipplan.router_pair_address(overlay, i)) for i in (0, 1)] == ["10.100.63.254", "10.100.63.255"]
    with pytest.raises(ValueError, match="router pair index 2"):
        ipplan.router_pair_address(overlay, 2)
