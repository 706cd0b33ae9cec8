"""The router pair's boot settings (components/boot/router.py): what each router of a pair
gets in boot.env, and the refusals, each naming the field."""

import base64
import dataclasses

import pytest

from components import boot as ud
from components.model import ipplan

TABLES = ("rtb-0123456789abcdef0", "rtb-0123456789abcdef1")
ALLOCATIONS = {"infrastructure": "eipalloc-0000000000000000a", "console": "eipalloc-0000000000000000b",
               "tenant": "eipalloc-0000000000000000c"}
OVERLAY = ud.OverlayConfig(role="router", vxlan_id=100, vxlan_group="239.255.0.100", overlay_address="10.100.0.1/16",
                           overlay_mtu=8450, vpc_cidr="10.0.0.0/16", router_dnat=("tcp:8080:10.100.0.2:8080",),
                           storage_cidr="10.0.0.0/24", console_address="10.0.0.11", tenant_address="10.0.0.12")
ONE = ud.RouterBoot(aws_region="eu-west-1", prefix="/cloudstack-ec2/test", fqdn="router.cloudstack.internal",
                    overlay=OVERLAY, boot_bucket="cloudstack-ec2-test-20261130000000000000000001")


def pair_boot(index=0, overlay=OVERLAY, **pair):
    own = ipplan.router_pair_address(ipplan.IPv4Network("10.100.0.0/16"), index) if index in (0, 1) else "10.100.63.254"
    fields = dict(index=index, peer_private_ip="10.0.0.13", route_table_ids=TABLES, eip_allocations=dict(ALLOCATIONS))
    fields.update(pair)
    return dataclasses.replace(ONE, overlay=dataclasses.replace(overlay, overlay_address=f"{own}/16"),
                               pair=ud.RouterPairBoot(**fields))


def test_one_router_gets_no_pair_settings():
    env = ud.router_environment(ONE)
    assert not [k for k in env if k.startswith("CSEC2_ROUTER_")]
    assert env["CSEC2_OVERLAY_IP"] == "10.100.0.1"


@pytest.mark.parametrize("index", [0, 1])
def test_each_router_of_a_pair_gets_its_place_and_the_aws_side(index):
    env = ud.router_environment(pair_boot(index))
    assert env["CSEC2_OVERLAY_IP"] == ("10.100.63.254", "10.100.63.255")[index]
    assert {k: v for k, v in env.items() if k.startswith("CSEC2_ROUTER_")} == {
        "CSEC2_ROUTER_PAIR_INDEX": str(index),
        "CSEC2_ROUTER_PAIR_PEER": "10.0.0.13",
        # The gateway members and CloudStack use: the plan's router address, now a VRRP address.
        "CSEC2_ROUTER_PAIR_GATEWAY": "10.100.0.1",
        "CSEC2_ROUTER_PAIR_ROUTE_TABLES": " ".join(TABLES),
        "CSEC2_ROUTER_EIP_INFRASTRUCTURE": ALLOCATIONS["infrastructure"],
        "CSEC2_ROUTER_EIP_CONSOLE": ALLOCATIONS["console"],
        "CSEC2_ROUTER_EIP_TENANT": ALLOCATIONS["tenant"],
    }


def test_a_router_without_console_and_tenants_addresses_moves_only_its_own_elastic_ip():
    bare = dataclasses.replace(OVERLAY, console_address=None, tenant_address=None)
    env = ud.router_environment(pair_boot(overlay=bare, eip_allocations={"infrastructure": ALLOCATIONS["infrastructure"]}))
    assert [k for k in env if k.startswith("CSEC2_ROUTER_EIP_")] == ["CSEC2_ROUTER_EIP_INFRASTRUCTURE"]


@pytest.mark.parametrize("change, field", [
    (dict(index=2), "pair.index"),
    (dict(index=True), "pair.index"),
    (dict(peer_private_ip="10.1.0.13"), "pair.peer_private_ip"),
    (dict(peer_private_ip="10.0.0.11"), "pair.peer_private_ip"),
    (dict(route_table_ids=()), "pair.route_table_ids"),
    (dict(route_table_ids=["rtb-0123456789abcdef0"]), "pair.route_table_ids"),
    (dict(route_table_ids=("rtb-xyz",)), r"pair.route_table_ids\[0\]"),
    (dict(route_table_ids=(TABLES[0], TABLES[0])), "pair.route_table_ids"),
    (dict(eip_allocations={"infrastructure": ALLOCATIONS["infrastructure"]}), "pair.eip_allocations"),
    (dict(eip_allocations={**ALLOCATIONS, "ui": "eipalloc-0000000000000000d"}), "pair.eip_allocations"),
    (dict(eip_allocations={**ALLOCATIONS, "console": "eip-1"}), r"pair.eip_allocations\['console'\]"),
    (dict(eip_allocations={**ALLOCATIONS, "tenant": ALLOCATIONS["console"]}), "pair.eip_allocations"),
])
def test_a_bad_pair_field_is_refused_by_name(change, field):
    with pytest.raises(ud.UserDataError, match=f"^{field}"):
        ud.router_environment(pair_boot(**change))


def test_a_pair_router_must_use_its_own_overlay_address_not_the_gateway():
    boot = dataclasses.replace(pair_boot(1), overlay=OVERLAY)  # 10.100.0.1: the gateway
    with pytest.raises(ud.UserDataError, match=r"^overlay.overlay_address: '10.100.0.1/16'.*'10.100.63.255/16'"):
        ud.router_environment(boot)


def test_pair_must_be_a_router_pair_boot():
    with pytest.raises(ud.UserDataError, match="^pair: expected a RouterPairBoot"):
        ud.router_environment(dataclasses.replace(ONE, pair={"index": 0}))


def test_the_pair_settings_fit_the_user_data():
    many_tables = tuple(f"rtb-0123456789abcdef{i}" for i in range(6))
    size = len(base64.b64decode(ud.render_router_user_data(pair_boot(route_table_ids=many_tables))))
    assert size <= ud.USER_DATA_LIMIT_BYTES
