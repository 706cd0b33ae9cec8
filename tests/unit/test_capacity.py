"""The dedicated subnet must hold every address the stack puts there, and
the offline allocator stops with a clear error instead of searching a full subnet forever."""

import ipaddress
import subprocess

import pytest

from components.model import catalog
from components.model import ipplan
from components.cli.offline import OfflineMocks, SubnetFullError
from components.model.settings import SettingsError, parse_settings

from planrun import cli
from test_cli import console_script, offline_env, ROOT

VALID = {"adminCidrs": ["203.0.113.0/24"], "vpcCidr": "10.0.0.0/16"}


def test_subnet_capacity_counts_ec2_reserved_instances_efs_tgw_and_the_routers_addresses():
    # /28: 16 addresses, 5 reserved by EC2 = 11 usable; router (its own address, the
    # console address and the tenants' address), management server, EFS mount target and
    # Transit Gateway attachment leave 5 for hosts.
    assert ipplan.subnet_host_capacity(ipaddress.IPv4Network("10.0.0.0/28")) == 5
    assert ipplan.subnet_host_capacity(ipaddress.IPv4Network("10.0.0.0/24")) == 256 - 5 - 6


def test_effective_limit_is_the_smallest_of_overlay_multicast_and_subnet():
    wide = ipplan.host_limit(ipaddress.IPv4Network("10.100.0.0/16"), ipaddress.IPv4Network("10.0.0.0/24"))
    assert (wide.hosts, wide.deciding) == (98, "multicast group")
    small_subnet = ipplan.host_limit(ipaddress.IPv4Network("10.100.0.0/16"), ipaddress.IPv4Network("10.0.0.0/28"))
    assert (small_subnet.hosts, small_subnet.deciding) == (5, "dedicated subnet")
    small_overlay = ipplan.host_limit(ipaddress.IPv4Network("10.100.0.0/24"), ipaddress.IPv4Network("10.0.0.0/24"))
    assert (small_overlay.hosts, small_overlay.deciding) == (52, "overlay")


def test_a_28_holds_five_hosts_not_six():
    parse_settings({**VALID, "cloudstackSubnetCidr": "10.0.0.0/28", "hostCount": 5}, catalog.instance_facts)
    with pytest.raises(SettingsError) as err:
        parse_settings({**VALID, "cloudstackSubnetCidr": "10.0.0.0/28", "hostCount": 6}, catalog.instance_facts)
    [problem] = err.value.problems
    assert problem.key == "cloudstackSubnetCidr"
    assert "hostCount" in problem.message and "11 usable" in problem.message and "at most 5" in problem.message
    assert "router console address" in problem.message and "router tenants' address" in problem.message


def test_allocator_raises_when_the_subnet_is_full_instead_of_looping():
    mocks = OfflineMocks("us-east-1", {"cloudstack": "10.0.0.0/28"})
    addresses = {mocks._private_ip(f"eni-{i}") for i in range(11)}
    assert len(addresses) == 11
    usable = set(list(ipaddress.IPv4Network("10.0.0.0/28"))[4:-1])  # EC2 keeps .0-.3 and .15
    assert {ipaddress.IPv4Address(a) for a in addresses} == usable
    with pytest.raises(SubnetFullError, match="cloudstackSubnetCidr"):
        mocks._private_ip("one-too-many")


def test_plan_of_an_overfull_subnet_returns_at_once_naming_both_keys():
    # The console script, with a timeout: before the fix this plan never returned.
    result = subprocess.run([console_script(), "plan", "--stack", "dev", "--set", "cloudstackSubnetCidr=10.0.0.0/28",
                             "--set", "hostCount=20"], cwd=ROOT, env=offline_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stdout
    assert "cloudstackSubnetCidr" in result.stderr and "hostCount" in result.stderr
    assert "Traceback" not in result.stderr


def test_plan_shows_the_effective_host_limit(capsys):
    result = cli(capsys, "plan", "--stack", "dev", "--set", "cloudstackSubnetCidr=10.0.0.0/28")
    assert result.returncode == 0, result.stderr
    assert "host limit: 5 (dedicated subnet 5, overlay 16372, multicast group 98)" in result.stdout
