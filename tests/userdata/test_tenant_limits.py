"""The router's budgets: the script's figures are the model's (components/model/tenantlimits.py)."""

from __future__ import annotations

import re
from importlib import resources

from components.model import tenantlimits

NAMES = ("TENANT_DNS_RATE", "TENANT_DNS_BURST", "TENANT_DNS_TOTAL", "SYSTEM_DNS_TOTAL", "SYSTEM_DNS_BURST",
         "TENANT_NEW_RATE", "TENANT_NEW_BURST", "TENANT_CONNECTIONS")


def script_figures() -> dict[str, int]:
    text = resources.files("userdata").joinpath("overlay-router.sh").read_text()
    figures = {}
    for line in re.findall(r"^readonly (.+)$", text, re.M):
        figures.update((name, int(value)) for name, value in re.findall(r"(\w+)=(\d+)", line))
    return figures


def test_the_router_script_enforces_the_models_figures():
    figures = script_figures()
    assert {name: figures.get(name) for name in NAMES} == {name: getattr(tenantlimits, name) for name in NAMES}


def test_tenants_and_system_vms_leave_the_infrastructure_part_of_the_vpc_resolver():
    assert tenantlimits.TENANT_DNS_RATE < tenantlimits.TENANT_DNS_TOTAL
    assert 0 < tenantlimits.infrastructure_dns_reserve() < tenantlimits.VPC_RESOLVER_PACKETS_PER_SECOND
    assert f"{tenantlimits.infrastructure_dns_reserve()}/s kept for the infrastructure" in tenantlimits.summary()[0]


def test_public_destinations_the_vpc_routes_elsewhere_are_refused_to_tenants():
    routes = [("10.0.0.0/16", "local"), ("0.0.0.0/0", "igw-1"), ("0.0.0.0/0", "tgw-1"),
              ("203.0.113.0/24", "vgw-1"), ("198.51.100.0/24", "igw-1"), ("172.20.0.0/16", "pcx-1"),
              ("192.0.2.0/25", "tgw-1"), ("192.0.2.128/25", "pcx-1"), ("", "vpce-1")]
    assert tenantlimits.refused_to_tenants(["52.216.0.0/15", "52.216.0.0/16"], routes) == (
        "52.216.0.0/15", "192.0.2.0/24", "203.0.113.0/24")


def test_the_gateway_endpoint_services_prefix_lists_by_partition():
    assert tenantlimits.gateway_endpoint_prefix_list_names("eu-west-1", "aws") == [
        "com.amazonaws.eu-west-1.s3", "com.amazonaws.eu-west-1.dynamodb"]
    assert tenantlimits.gateway_endpoint_prefix_list_names("cn-north-1", "aws-cn")[0] == "cn.com.amazonaws.cn-north-1.s3"
