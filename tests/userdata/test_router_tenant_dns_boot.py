"""The router's boot sets up the tenants' resolver (unbound) when its overlay settings ask
for one (overlay-network.sh TENANT_DNS), with the settings the overlay script prints."""

import dataclasses

import pytest

from bootlab import ROUTER, is_cmd, render
from components import boot as ud

CONF = "/etc/unbound/unbound.conf.d/cloudstack-ec2.conf"


def installs_unbound(call) -> bool:
    return call["cmd"] == "apt-get" and "install" in call["args"] and "unbound" in call["args"]


def router(**overlay) -> ud.RouterBoot:
    return dataclasses.replace(ROUTER, overlay=dataclasses.replace(ROUTER.overlay, **overlay))


@pytest.mark.parametrize("mode, upstream", [("forward", "forward-addr: 10.0.0.2"), ("recurse", None)])
def test_the_router_installs_and_configures_the_tenants_resolver(machine, mode, upstream):
    r = machine.run_user_data(render(router(tenant_address="10.0.0.12", tenant_dns=mode)))
    assert r.status == 0, r.output
    conf = machine.file(CONF).read_text()
    assert "interface: 10.100.0.1" in conf and "access-control: 10.100.0.0/16 allow" in conf
    assert (upstream in conf) if upstream else "forward-zone" not in conf
    calls = machine.calls()
    install = next(i for i, c in enumerate(calls) if installs_unbound(c))
    restart = next(i for i, c in enumerate(calls) if is_cmd("systemctl", "restart", "unbound.service")(c))
    overlay = next(i for i, c in enumerate(calls)
                   if is_cmd("systemctl", "start", "cloudstack-ec2-overlay.service")(c))
    # Checked before it replaces anything, and running before the overlay sends tenants to it.
    assert any(is_cmd("unbound-checkconf")(c) for c in calls)
    assert install < restart < overlay
    # The package's resolvconf hook would point the router's own lookups at 127.0.0.1.
    mask = next(i for i, c in enumerate(calls) if is_cmd("systemctl", "mask", "unbound-resolvconf.service")(c))
    assert mask < install


def test_without_a_tenants_resolver_nothing_is_installed(machine):
    r = machine.run_user_data(render(ROUTER))
    assert r.status == 0, r.output
    assert not machine.file(CONF).exists()
    assert not any(installs_unbound(c) for c in machine.calls())
    assert "tenants' DNS: the VPC resolver" in machine.file("/var/log/cloudstack-ec2-boot.log").read_text()


def test_the_renderer_refuses_recurse_without_the_tenants_address():
    with pytest.raises(ud.UserDataError, match="tenant_dns"):
        render(router(tenant_dns="recurse"))
