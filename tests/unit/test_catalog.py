"""The cost estimate: known prices add up, unknown ones are named instead of guessed."""

import pytest

from components.model import catalog
from components.model.settings import parse_settings


def settings(**overrides):
    return parse_settings({"adminCidrs": ["10.0.0.0/8"], **overrides}, catalog.instance_facts)


def line(estimate, prefix):
    return next(l for l in estimate.lines if l.item.startswith(prefix))


def test_estimate_adds_up_its_lines():
    e = catalog.estimate(settings(hostCount=3))
    assert e.hourly == pytest.approx(sum(l.hourly for l in e.lines))
    assert e.monthly == pytest.approx(e.hourly * catalog.HOURS_PER_MONTH)
    assert line(e, "KVM host").quantity == 3
    assert line(e, "KVM host").hourly == pytest.approx(3 * 4.08)


def test_more_hosts_cost_exactly_one_host_more():
    two = catalog.estimate(settings(hostCount=2))
    three = catalog.estimate(settings(hostCount=3))
    root = settings().root_volume_gb * catalog.EBS_GP3_GB_MONTH / catalog.HOURS_PER_MONTH
    # A host's CloudWatch share: its agent.log (0.05 GB a day), its three agent metrics and
    # its status-check alarm.
    watched = (0.05 / 24 * catalog.CLOUDWATCH_LOG_GB + 3 * catalog.CLOUDWATCH_METRIC_MONTH / catalog.HOURS_PER_MONTH
               + catalog.CLOUDWATCH_ALARM_MONTH / catalog.HOURS_PER_MONTH)
    assert three.hourly - two.hourly == pytest.approx(4.08 + root + watched)


def test_cloudwatch_lines_are_in_the_plan():
    e = catalog.estimate(settings(hostCount=3))
    items = [line.item for line in e.lines]
    logs = line(e, "CloudWatch Logs")
    assert logs.item == "CloudWatch Logs, MB/day (est.)" and logs.quantity == 660
    assert logs.hourly * 24 == pytest.approx(0.66 * catalog.CLOUDWATCH_LOG_GB)
    # 11 single-metric alarms (the hosts' 3 status checks, the router's and the management server's
    # system and instance checks), 5 of two metrics
    assert line(e, "CloudWatch alarm metrics").quantity == 21
    assert line(e, "CloudWatch dashboard").hourly * catalog.HOURS_PER_MONTH == pytest.approx(3.0)
    assert line(e, "KMS keys (anchor, logs)").quantity == 2 and "CloudWatch custom metrics" in items


def test_unknown_type_is_reported_not_guessed():
    from components.model.settings import InstanceFacts

    s = parse_settings({"adminCidrs": ["10.0.0.0/8"], "hostInstanceType": "c9z.metal"},
                       lambda n: InstanceFacts(n, "", True, ("x86_64",), 1, 1))
    e = catalog.estimate(s)
    assert e.unknown == ("KVM host c9z.metal",)
    assert any("NOT in the price table" in a and "c9z.metal" in a for a in e.assumptions())
    assert e.hourly == pytest.approx(sum(l.hourly for l in e.lines if l.unit_hourly is not None))


def test_mysql_80_adds_extended_support():
    e84 = catalog.estimate(settings())
    e80 = catalog.estimate(settings(dbEngineVersion="8.0"))
    assert e80.hourly - e84.hourly == pytest.approx(2 * catalog.RDS_EXTENDED_SUPPORT_PER_VCPU_HOUR)


def test_multi_az_doubles_the_database():
    single = line(catalog.estimate(settings()), "RDS MySQL").hourly
    multi = line(catalog.estimate(settings(dbMultiAz=True)), "RDS MySQL").hourly
    assert multi == pytest.approx(2 * single)


def test_assumptions_state_region_and_date():
    text = " ".join(catalog.estimate(settings()).assumptions())
    assert catalog.PRICE_REGION in text and catalog.PRICES_RECORDED in text


def test_catalog_facts_match_the_design():
    assert catalog.instance_facts("c5.metal").bare_metal
    assert catalog.instance_facts("m5zn.metal").vcpus == 48
    assert catalog.instance_facts("c5.metal").vcpus == 96
    assert not catalog.instance_facts("t2.medium").nitro
    assert catalog.instance_facts("nope.large") is None



def test_the_stack_has_five_secrets_six_with_a_directory_eight_with_ldaps():
    from types import SimpleNamespace

    from components.model import naming

    assert line(catalog.estimate(settings()), "Secrets Manager secrets").quantity == 5
    assert [len(naming.stack_secrets(d)) for d in (None, SimpleNamespace(ldaps=False), SimpleNamespace(ldaps=True))] \
        == [5, 6, 8]
    assert naming.stack_secrets(SimpleNamespace(ldaps=True))[-3:] == (
        naming.SECRET_LDAP_BIND, naming.SECRET_LDAP_CA, naming.SECRET_LDAP_TRUSTSTORE)
