"""The offline plan is honest about what it cannot know: a type missing from
its table is unknown (AWS decides at preview), not refused; real AZ names pass; every
problem comes in one round."""

import pytest

from planrun import cli


@pytest.fixture
def plan(capsys):
    return lambda *args: cli(capsys, "plan", "--stack", "dev", *args)


def test_types_missing_from_the_table_are_unknown_not_refused(plan):
    result = plan("--set", "hostInstanceType=c8i.metal-48xl", "--set", "managementInstanceType=m7i.2xlarge")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "hostInstanceType c8i.metal-48xl is not in the offline table: unknown offline" in out
    assert "managementInstanceType m7i.2xlarge is not in the offline table: unknown offline" in out
    assert "not offered" not in out + result.stderr
    cost = out[out.index("Estimated cost"):]
    assert "KVM host c8i.metal-48xl" in cost and "unknown" in cost
    assert "NOT in the price table, so NOT in the total: management server 0 m7i.2xlarge, KVM host c8i.metal-48xl" in cost


def test_known_non_nitro_type_is_still_refused(plan):
    result = plan("--set", "routerInstanceType=t2.medium")
    assert result.returncode == 2 and "routerInstanceType = 't2.medium'" in result.stderr


def test_real_az_names_are_accepted(plan):
    result = plan("--set", "availabilityZone=us-east-1d")
    assert result.returncode == 0, result.stderr
    assert "underlay-cloudstack  [cidr: 10.0.0.0/24; az: us-east-1d]" in result.stdout


def test_every_problem_in_one_round_az_included(plan):
    result = plan("--set", "availabilityZone=us-east-1z", "--set", "hostCount=0")
    assert result.returncode == 2
    assert "availabilityZone = 'us-east-1z': is not an available AZ of the region" in result.stderr
    assert "hostCount = 0: must be at least 1" in result.stderr
