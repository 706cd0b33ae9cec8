"""The offline plan says what tenants and system VMs get at the router: their internet
address, who answers their DNS and their budgets (components/model/tenantlimits.py)."""

from components.model import tenantlimits

from planrun import cli


def test_the_plan_shows_the_tenants_address_dns_and_budgets(capsys):
    result = cli(capsys, "plan", "--stack", "dev")
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("Tenants and system VMs at the router\n", 1)[1].split("\n\n", 1)[0]
    assert "tenants' Elastic IP (never the infrastructure's)" in section
    assert "recursing from the root (no VPC private zones)" in section
    for line in tenantlimits.summary():
        assert line in section
    assert "424/s kept for the infrastructure" in section


def test_tenant_private_dns_shows_the_vpc_resolver(capsys):
    result = cli(capsys, "plan", "--stack", "dev", "--set", "tenantPrivateDns=true")
    assert result.returncode == 0, result.stderr
    assert "tenants' DNS: the router's resolver, forwarding to the VPC resolver (tenantPrivateDns)" in result.stdout
