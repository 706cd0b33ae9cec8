"""CloudStack's settings for a TLS front end against the CloudStack API emulator: set when the
UI/API is behind HTTPS, back to CloudStack's defaults when it no longer is (README "HTTPS")."""

from __future__ import annotations

import pytest
from registration_engine import Engine
from registration_specs import FAST, REGION

from components.model.frontend import tls_settings
from components.model.ipplan import build_plan
from components.registration import GlobalSetting
from components.registration.spec import build_spec

URL = "https://cloud.example.com"
CIDRS = ("10.0.253.128/26", "10.0.253.192/26")


def spec(https: bool):
    """As components.program builds it: the TLS settings only behind HTTPS."""
    plan = build_plan(overlay_cidr="10.100.0.0/16", vpc_cidr="10.0.0.0/16", host_count=1,
                      guest_cidr="10.1.1.0/24", guest_vlans=(1000, 1999))
    extra = tuple(GlobalSetting(*s) for s in tls_settings(URL, CIDRS)) if https else ()
    return build_spec(plan=plan, zone_name="zone1", host_username="cloudstack", timeouts=FAST, extra_settings=extra)


def test_tls_settings_are_set_behind_https_and_reset_when_it_goes(emulator, api_secret):
    defaults = {name: emulator.config[name] for name, _value, _why in tls_settings(URL, CIDRS)}
    assert defaults["enable.secure.session.cookie"] == "false"
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(spec(https=True))
    assert emulator.config["enable.secure.session.cookie"] == "true"
    assert emulator.config["endpoint.url"] == f"{URL}/client/api"
    assert emulator.config["proxy.header.verify"] == "true"
    assert emulator.config["proxy.header.names"] == "X-Forwarded-For"
    assert emulator.config["proxy.cidr"] == ",".join(CIDRS)
    # Never a secure cookie over plain HTTP (apache/cloudstack#7821): dropping HTTPS resets them.
    engine.up(spec(https=False))
    assert {name: emulator.config[name] for name in defaults} == defaults


def test_settings_are_set_only_with_an_https_url():
    with pytest.raises(ValueError, match="https://"):
        tls_settings("http://csui-1.us-east-1.elb.amazonaws.com", CIDRS)
