"""Custom timeouts where the provider's defaults are too short for real AWS (metal hosts,
RDS Multi-AZ and upgrades, Transit Gateway), as documented settings."""

from __future__ import annotations

import pytest

from components.model.settings import SettingsError, parse_settings

TGW_TYPES = ("aws:ec2transitgateway/transitGateway:TransitGateway",
             "aws:ec2transitgateway/vpcAttachment:VpcAttachment",
             "aws:ec2transitgateway/multicastDomain:MulticastDomain")


def test_metal_hosts_wait_longer_than_the_providers_ten_minutes(dev):
    hosts = dev.host_instances()
    assert hosts and all(h.custom_timeouts == ("60m", "60m", "60m") for h in hosts)
    # The Nitro (non-metal) instances start within the provider's defaults.
    assert dev.instance("router").custom_timeouts == ("", "", "")


def test_database_and_transit_gateway_timeouts(dev):
    assert dev.get("aws:rds/instance:Instance", "database-mysql").custom_timeouts == ("180m", "180m", "180m")
    for typ in TGW_TYPES:
        assert all(r.custom_timeouts == ("30m", "30m", "30m") for r in dev.of_type(typ)), typ


def test_timeouts_are_settings(deploy):
    d = deploy(hostTimeoutMinutes=90, dbTimeoutMinutes=240, transitGatewayTimeoutMinutes=45, dbMultiAz=True)
    assert {h.custom_timeouts for h in d.host_instances()} == {("90m", "90m", "90m")}
    assert d.get("aws:rds/instance:Instance", "database-mysql").custom_timeouts == ("240m",) * 3
    assert d.get(TGW_TYPES[0], "multicast-tgw").custom_timeouts == ("45m",) * 3


@pytest.mark.parametrize("key,value", [("hostTimeoutMinutes", 10), ("dbTimeoutMinutes", 20),
                                       ("transitGatewayTimeoutMinutes", 0)])
def test_too_short_timeouts_are_refused_naming_the_key(key, value):
    with pytest.raises(SettingsError) as err:
        parse_settings({"adminCidrs": ["10.0.0.0/8"], key: value})
    assert [p.key for p in err.value.problems] == [key]
