"""KVM hosts on virtual instances with nested virtualization (C8i/M8i/R8i): the type check,
decided from AWS's processor facts, and the offline catalog's facts and dated prices."""

from __future__ import annotations

import pytest

from components.model import catalog
from components.model.settings import InstanceFacts, SettingsError, check_instance_type, parse_settings

VALID = {"adminCidrs": ["203.0.113.0/24"]}


def facts(name: str, *, metal: bool = False, hypervisor: str = "nitro", features=(), arch=("x86_64",)):
    return InstanceFacts(name, "" if metal else hypervisor, metal, arch, 16, 32768, tuple(features))


def host_problems(f: InstanceFacts) -> list:
    return check_instance_type("hostInstanceType", f.instance_type, True, f)


# --- the rule, from AWS's facts ----------------------------------------------------------

def test_a_virtual_type_with_the_nested_virtualization_feature_is_a_kvm_host():
    assert host_problems(facts("c8i.4xlarge", features=("nested-virtualization",))) == []


def test_metal_stays_a_kvm_host():
    assert host_problems(facts("c5.metal", metal=True)) == []


def test_the_decision_is_the_processor_fact_not_the_name():
    # A made-up type AWS reports with the feature is accepted; a C8i name without the
    # feature is refused: nothing is decided from the family name.
    assert host_problems(facts("x9z.2xlarge", features=("nested-virtualization",))) == []
    refused = host_problems(facts("c8i.4xlarge", features=()))
    assert len(refused) == 1 and "nested virtualization" in refused[0].message
    # Another processor feature does not count.
    assert host_problems(facts("c6a.4xlarge", features=("amd-sev-snp",)))


def test_refusal_names_the_key_the_type_and_what_is_accepted():
    (p,) = host_problems(facts("c7i.4xlarge"))
    assert p.key == "hostInstanceType" and p.value == "c7i.4xlarge"
    text = str(p)
    assert "cloudstack-ec2:hostInstanceType = 'c7i.4xlarge'" in text
    assert "metal" in text and "nested-virtualization" in text and "c8i.4xlarge" in text


def test_nested_virtualization_still_needs_nitro_and_x86():
    arm = host_problems(facts("c8g.4xlarge", features=("nested-virtualization",), arch=("arm64",)))
    assert [p.message for p in arm if "x86_64" in p.message]


def test_router_and_management_need_no_virtualization():
    # The feature matters only for hosts: a C8i router is just a Nitro instance.
    f = facts("c8i.xlarge", features=("nested-virtualization",))
    assert check_instance_type("routerInstanceType", f.instance_type, False, f) == []
    plain = facts("c7i.4xlarge")
    assert check_instance_type("managementInstanceType", plain.instance_type, False, plain) == []


def test_settings_accept_c8i_and_refuse_a_virtual_type_without_the_feature():
    s = parse_settings({**VALID, "hostInstanceType": "c8i.4xlarge"}, catalog.instance_facts)
    assert s.host_instance_type == "c8i.4xlarge"
    with pytest.raises(SettingsError) as err:
        parse_settings({**VALID, "hostInstanceType": "c7i.4xlarge"}, catalog.instance_facts)
    assert [p.key for p in err.value.problems] == ["hostInstanceType"]
    assert "nested-virtualization" in str(err.value)


def test_instance_facts_properties():
    nested = facts("m8i.4xlarge", features=("nested-virtualization",))
    assert nested.nested_virtualization and nested.runs_kvm and nested.nitro
    metal = facts("c5.metal", metal=True, features=("nested-virtualization",))
    # Metal runs KVM natively: it is never launched with the nested option.
    assert metal.runs_kvm and not metal.nested_virtualization
    assert not facts("c7i.4xlarge").runs_kvm


# --- the offline catalog -----------------------------------------------------------------

@pytest.mark.parametrize("name,vcpus,gib", [
    ("c8i.xlarge", 4, 8), ("c8i.4xlarge", 16, 32), ("c8i.16xlarge", 64, 128),
    ("m8i.4xlarge", 16, 64), ("r8i.4xlarge", 16, 128), ("c8i-flex.4xlarge", 16, 32),
])
def test_catalog_has_the_8th_generation_sizes_with_their_facts(name, vcpus, gib):
    f = catalog.instance_facts(name)
    assert f is not None and f.nested_virtualization and f.runs_kvm and not f.bare_metal
    assert (f.vcpus, f.memory_mib) == (vcpus, gib * 1024)
    assert catalog.ec2_hourly(name) is not None


def test_catalog_prices_follow_size_and_family():
    # Within a family the price doubles with the size; R costs more than M than C.
    assert catalog.ec2_hourly("c8i.8xlarge") == pytest.approx(2 * catalog.ec2_hourly("c8i.4xlarge"))
    assert catalog.ec2_hourly("c8i.4xlarge") < catalog.ec2_hourly("m8i.4xlarge") < catalog.ec2_hourly("r8i.4xlarge")
    # A c8i.4xlarge costs a fraction of the cheapest metal host.
    cheapest_metal = min(catalog.ec2_hourly(t) for t in ("c5.metal", "m5zn.metal", "c5n.metal"))
    assert catalog.ec2_hourly("c8i.4xlarge") < cheapest_metal / 4


def test_previous_generation_virtual_types_lack_the_feature():
    for name in ("c7i.4xlarge", "m6i.xlarge", "c5.xlarge"):
        assert not catalog.instance_facts(name).nested_virtualization, name


def test_estimate_dates_the_8th_generation_rows_and_names_the_source():
    s = parse_settings({**VALID, "hostInstanceType": "c8i.4xlarge", "hostCount": 2}, catalog.instance_facts)
    notes = " ".join(catalog.estimate(s).assumptions())
    assert f"c8i.4xlarge: recorded {catalog.NESTED_PRICES_RECORDED}" in notes
    assert "aws.amazon.com/ec2/pricing/on-demand" in notes
    metal = parse_settings(VALID, catalog.instance_facts)
    assert catalog.NESTED_PRICES_RECORDED not in " ".join(catalog.estimate(metal).assumptions())


# --- host types and clusters (pure) ------------------------------------------------------

from components.model.hosttypes import HostTypes, plan_host_types  # noqa: E402
from components.registration import SpecError, clusters_for  # noqa: E402


def test_existing_hosts_keep_their_type_new_ones_get_the_configured_one():
    t = plan_host_types(4, "c8i.4xlarge", {0: "c5.metal", 1: "c5.metal", 7: "c5.metal"}, catalog.instance_facts)
    assert t.types == ("c5.metal", "c5.metal", "c8i.4xlarge", "c8i.4xlarge")
    assert t.nested == frozenset({"c8i.4xlarge"}) and t.mixed
    assert [t.nested_virtualization(i) for i in range(4)] == [False, False, True, True]


def test_an_existing_type_aws_no_longer_describes_is_an_error_not_a_guess():
    with pytest.raises(SettingsError) as err:
        plan_host_types(2, "c8i.4xlarge", {0: "x1old.2xlarge"}, catalog.instance_facts)
    assert "x1old.2xlarge" in str(err.value) and "[0]" in str(err.value)


def test_one_type_is_the_old_cluster_rule():
    for n, per in ((1, 16), (20, 16), (5, 2), (33, 16)):
        assert clusters_for(n, per, ["c5.metal"] * n) == clusters_for(n, per) == [i // per for i in range(n)]


def test_a_type_change_starts_a_new_cluster():
    types = ["c5.metal"] * 3 + ["c8i.4xlarge"] * 3
    assert clusters_for(6, 16, types) == [0, 0, 0, 1, 1, 1]
    # Back to the first type: a new cluster again (never a cluster of mixed types).
    assert clusters_for(7, 16, types + ["c5.metal"]) == [0, 0, 0, 1, 1, 1, 2]
    # hostsPerCluster still holds within a run of one type.
    assert clusters_for(6, 2, types) == [0, 0, 1, 2, 2, 3]


def test_cluster_of_a_host_depends_only_on_the_hosts_below_it():
    types = ["m5zn.metal"] * 5 + ["c8i.4xlarge"] * 20
    full = clusters_for(25, 4, types)
    for n in range(1, 25):
        assert clusters_for(n, 4, types[:n]) == full[:n]
    for c in set(full):
        members = [types[i] for i, k in enumerate(full) if k == c]
        assert len(set(members)) == 1 and len(members) <= 4


def test_clusters_for_wants_one_type_per_host():
    with pytest.raises(SpecError, match="instance_types"):
        clusters_for(3, 16, ["c5.metal"])


def test_host_types_default_is_one_type():
    assert not HostTypes(("c5.metal",) * 3).mixed


def test_capacity_rows_per_type_and_start_time_model():
    s = parse_settings({**VALID, "hostInstanceType": "c8i.4xlarge", "hostCount": 3}, catalog.instance_facts)
    rows = catalog.host_capacity(s, ["m5zn.metal", "c8i.4xlarge", "c8i.4xlarge"])
    assert [(r.instance_type, r.hosts, r.vcpus, r.memory_gib, r.virtualization) for r in rows] == [
        ("m5zn.metal", 1, 48, 192, "metal"), ("c8i.4xlarge", 2, 16, 32, "nested")]
    # A nested-virtualization host starts far sooner than a metal one (scale-out).
    assert rows[1].start_minutes[1] < rows[0].start_minutes[0]
    assert catalog.host_capacity_total(s, ["m5zn.metal", "c8i.4xlarge", "c8i.4xlarge"]) == \
        f"3 hosts, 80 vCPU and 256 GiB in all, ${3.9641 + 2 * 0.7497:.2f}/hour"
    unknown = catalog.host_capacity(s, ["zz9.metal"])[0]
    assert (unknown.vcpus, unknown.hourly, unknown.start_text) == (None, None, "unknown")


def test_a_configured_type_without_facts_is_left_to_the_settings_check():
    # Only existing hosts' types must be known here; the configured one was judged already.
    t = plan_host_types(2, "c9z.metal", {}, catalog.instance_facts)
    assert t.types == ("c9z.metal", "c9z.metal") and not t.nested
