"""The console forwards: the console proxy's public IP published for the router (SSM, moto),
kept right when CloudStack gives a new console proxy another address, kept inside the system VMs'
public range, and the console settings checked (never set)."""

from __future__ import annotations

import dataclasses
import logging
import time

import boto3
import pytest
from registration_engine import Engine
from registration_specs import FAST, REGION, make_spec

from components.model import consoles
from components.registration.client import RegistrationError
from components.registration.console_forwards import static_settings_sql
from components.registration.plan import Deferred, Ref, plan_registration, with_console_parameter
from components.registration.provider import CloudStackObjectProvider
from components.registration.spec import PublicRangeSpec, Timeouts

PARAM = "/cloudstack-ec2/test/console-forwards"
CONSOLE_ADDRESS = "203.0.113.20"
#: the system VMs come up in a fraction of a second here; a console proxy that never does fails fast
T = Timeouts(**{**FAST.as_dict(), "system_vms": 1.0})


@pytest.fixture
def ssm(aws):
    client = boto3.client("ssm", region_name=REGION)
    # what the stack creates before the registration (value then ignored by Pulumi)
    client.put_parameter(Name=PARAM, Value=consoles.NO_CONSOLE, Type="String")
    return client


@pytest.fixture
def engine(emulator, api_secret, ssm):
    e = Engine(emulator.url, api_secret, REGION)
    e.deferred.update(console_forwards_parameter=PARAM, console_address=CONSOLE_ADDRESS)
    # what the management server's boot writes into cloud.configuration (CSEC2_CONSOLE_ADDRESS)
    emulator.seed_configuration("consoleproxy.static.publicIp", CONSOLE_ADDRESS)
    emulator.seed_configuration("consoleproxy.static.port", "80")
    return e


def warnings_of(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def destroyed(emulator) -> list[str]:
    return [r["params"]["id"] for r in emulator.requests if r["command"] == "destroySystemVm"]


def value(ssm) -> str:
    return ssm.get_parameter(Name=PARAM)["Parameter"]["Value"]


def console_proxy(emulator, running=True, deadline=2.0) -> dict:
    end = time.monotonic() + deadline
    while True:
        with emulator.lock:
            emulator._advance()
            vms = [v for v in emulator.vms.values() if v["type"] == "ConsoleProxy"]
        if vms and (not running or vms[0]["state"] == "Running") or time.monotonic() > end:
            return dict(vms[0])
        time.sleep(0.02)


STRICTNESS = "system.vm.public.ip.reservation.mode.strictness"


def not_strict(spec):
    """The spec as a management server applies it that has not restarted since the strictness
    setting was written (not dynamic: read at start), or before the registration set it (an
    existing stack): system VMs fall back to the tenants' range when theirs is full."""
    return dataclasses.replace(spec, global_settings=tuple(g for g in spec.global_settings if g.name != STRICTNESS))


def updates(engine: Engine, since: int) -> list[tuple[str, str]]:
    return engine.log[since:]


def test_plan_has_console_forwards_after_zone_enable_and_the_guard_after_it():
    plan = plan_registration(make_spec(1))
    by = {p.name: p for p in plan}
    cf = by["console-forwards"]
    assert cf.kind == "console_forwards" and cf.depends_on == ("zone-enable", "system-public-range")
    assert cf.props["zoneid"] == Ref("zone") and cf.props["parameter_name"] == Deferred("console_forwards_parameter")
    assert cf.props["console_address"] == Deferred("console_address")
    assert cf.props["system_public_range"] == "10.100.192.1-10.100.192.8"
    assert "console-forwards" in by["workload-guard"].refs()
    # no parameter to write to: nothing planned
    off = {p.name: p for p in plan_registration(with_console_parameter(make_spec(1), ""))}
    assert "console-forwards" not in off and "console-forwards" not in off["workload-guard"].refs()
    assert with_console_parameter(make_spec(1), None).consoles is False   # a router without parameters
    assert with_console_parameter(make_spec(1), PARAM).consoles is True


def test_publishes_the_console_proxys_address(emulator, engine, ssm, caplog):
    caplog.set_level(logging.INFO, "cloudstack_ec2.registration")
    engine.up(make_spec(1, timeouts=T))
    cpvm = console_proxy(emulator)
    # the system VMs' public range (forsystemvms): the secondary storage VM took its first address
    assert cpvm["publicip"] == "10.100.192.2"
    assert value(ssm) == "tcp:80:10.100.192.2:80 tcp:8080:10.100.192.2:8080" \
        == consoles.console_forwards("10.100.192.2")
    outs = engine.state["console-forwards"]["outs"]
    assert outs["publicip"] == "10.100.192.2" and outs["forwards"] == value(ssm)
    assert consoles.forwarded_proxy(value(ssm)) == cpvm["publicip"]
    # the static settings were right (the boot wrote them): nothing set, nothing to warn about
    assert not any(r["command"] == "updateConfiguration" and r["params"]["name"].startswith("consoleproxy.")
                   and r["params"]["name"] != "consoleproxy.launch.max" for r in emulator.requests)
    assert warnings_of(caplog) == "" and destroyed(emulator) == []
    # the zone-scoped settings were read for the zone (its effective value), the static ones globally
    reads = [r["params"] for r in emulator.requests if r["command"] == "listConfigurations"]
    zone = engine.state["zone"]["id"]
    for name in ("consoleproxy.url.domain", "consoleproxy.sslEnabled"):
        assert {"name": name, "zoneid": zone} in [{k: p.get(k) for k in ("name", "zoneid")} for p in reads], name
    # one console proxy per zone: the router forwards to one
    assert emulator.config["consoleproxy.launch.max"] == "1"
    # the next `pulumi up` changes nothing
    before = len(engine.log)
    engine.up(make_spec(1, timeouts=T))
    assert updates(engine, before) == []


def test_the_system_vms_public_range_is_registered_for_system_vms(emulator, engine, ssm):
    engine.up(make_spec(1, timeouts=T))
    ranges = {(v["startip"], v["endip"]): v["forsystemvms"] for v in emulator.vlans.values()}
    assert ranges == {("10.100.128.1", "10.100.131.232"): False, ("10.100.192.1", "10.100.192.8"): True}
    created = [r["params"] for r in emulator.requests if r["command"] == "createVlanIpRange"]
    assert [p.get("forsystemvms") for p in created] == [None, "true"]
    # a refresh reads both back unchanged (the tenants' range of older stacks has no forsystemvms key)
    report = engine.refresh()
    assert report["public-range"] == report["system-public-range"] == "same"
    assert "forsystemvms" not in engine.state["public-range"]["outs"]
    assert engine.state["system-public-range"]["outs"]["forsystemvms"] is True


def test_a_recreated_console_proxy_with_a_new_address_is_seen_and_republished(emulator, engine, ssm):
    spec = make_spec(1, timeouts=T)
    engine.up(spec)
    old = console_proxy(emulator)
    zone = engine.state["zone"]["id"]
    # an operator destroys the console proxy; meanwhile another system VM takes its address
    emulator.destroy_system_vm(old["id"])
    assert emulator.hold_public_ip(zone) == "10.100.128.1"   # a tenant's router: never the system range
    assert emulator.hold_public_ip(zone, for_system_vms=True) == old["publicip"]
    new = console_proxy(emulator)
    assert new["publicip"] == "10.100.192.3" and new["id"] != old["id"]
    # preview: the provider's diff probes CloudStack and sees it
    s = engine.state["console-forwards"]
    props = {**s["outs"]}
    d = CloudStackObjectProvider("console_forwards").diff(s["id"], s["outs"], props)
    assert d.changes and not d.replaces
    assert value(ssm) == consoles.console_forwards(old["publicip"])    # a preview writes nothing
    before = len(engine.log)
    engine.up(spec)
    assert updates(engine, before) == [("update", "console-forwards")]
    assert value(ssm) == consoles.console_forwards("10.100.192.3")
    assert engine.state["console-forwards"]["outs"]["publicip"] == "10.100.192.3"
    assert destroyed(emulator) == []     # inside the range: left alone


def test_a_value_the_management_servers_published_for_the_live_proxy_is_no_change(emulator, engine, ssm):
    """userdata/console-forwards.sh follows a recreated console proxy between two updates: its
    value, the live proxy's, is accepted as it is; one that is not the live proxy's is published."""
    spec = make_spec(1, timeouts=T)
    engine.up(spec)
    old = console_proxy(emulator)
    emulator.destroy_system_vm(old["id"])
    emulator.hold_public_ip(engine.state["zone"]["id"], for_system_vms=True)
    new = console_proxy(emulator)
    assert new["publicip"] == "10.100.192.3"
    ssm.put_parameter(Name=PARAM, Value=consoles.console_forwards(new["publicip"]), Type="String", Overwrite=True)
    s = engine.state["console-forwards"]
    d = CloudStackObjectProvider("console_forwards").diff(s["id"], s["outs"], {**s["outs"]})
    assert not d.changes and not d.replaces
    before = len(engine.log)
    engine.up(spec)
    assert updates(engine, before) == [] and value(ssm) == consoles.console_forwards("10.100.192.3")
    # the parameter forwards elsewhere than the live proxy: a change, and the update publishes it
    ssm.put_parameter(Name=PARAM, Value=consoles.console_forwards(old["publicip"]), Type="String", Overwrite=True)
    engine.up(spec)
    assert updates(engine, before) == [("update", "console-forwards")]
    assert value(ssm) == consoles.console_forwards("10.100.192.3")
    assert engine.state["console-forwards"]["outs"]["publicip"] == "10.100.192.3"


def test_a_refresh_shows_the_live_address_and_the_next_up_republishes(emulator, engine, ssm):
    spec = make_spec(1, timeouts=T)
    engine.up(spec)
    old = console_proxy(emulator)
    emulator.destroy_system_vm(old["id"])
    emulator.hold_public_ip(engine.state["zone"]["id"], for_system_vms=True)
    console_proxy(emulator)
    assert engine.refresh()["console-forwards"] == "drift"
    assert engine.state["console-forwards"]["outs"]["publicip"] == "10.100.192.3"
    engine.up(spec)
    assert value(ssm) == consoles.console_forwards("10.100.192.3")


def test_missing_static_settings_are_a_warning_with_the_remedy(emulator, api_secret, ssm, caplog):
    # a management server that booted before the boot wrote them: no rows at all
    engine = Engine(emulator.url, api_secret, REGION)
    engine.deferred.update(console_forwards_parameter=PARAM, console_address=CONSOLE_ADDRESS)
    engine.up(make_spec(1, timeouts=T))
    text = warnings_of(caplog)
    assert "consoleproxy.static.publicIp is not set and consoleproxy.static.port not set" in text
    assert static_settings_sql(CONSOLE_ADDRESS) in text
    assert "aws ssm start-session" in text and "systemctl restart cloudstack-management" in text
    # checked, never set (updateConfiguration refuses them); the address is published all the same
    assert not any(r["command"] == "updateConfiguration" and "static" in r["params"]["name"]
                   for r in emulator.requests)
    assert value(ssm) == consoles.console_forwards(console_proxy(emulator)["publicip"])


def test_the_remedy_sql_writes_both_rows():
    sql = static_settings_sql("203.0.113.20")
    assert sql.count("INSERT INTO cloud.configuration") == 2 and sql.count("ON DUPLICATE KEY UPDATE") == 2
    assert "'consoleproxy.static.publicIp', '203.0.113.20'" in sql and "value = '203.0.113.20';" in sql
    assert "'consoleproxy.static.port', '80'" in sql and "value = '80';" in sql
    assert "''" in static_settings_sql("x'y")   # quoted, whatever it is given


def test_wrong_console_settings_are_warnings_read_for_the_zone(emulator, engine, ssm, caplog):
    c = emulator   # values as the boot of another stack, or an operator, left them
    emulator.seed_configuration("consoleproxy.static.port", "8443")
    with c.lock:
        c.config["novnc.console.port"] = "8099"
    engine.up(make_spec(1, timeouts=T))
    assert not warnings_of(caplog).count("consoleproxy.url.domain")
    text = warnings_of(caplog)
    assert f"consoleproxy.static.publicIp is '{CONSOLE_ADDRESS}' and consoleproxy.static.port '8443'" in text
    assert "novnc.console.port is 8099" in text
    # zone-level values (updateConfiguration zoneid=), which a global read does not show
    zone = engine.state["zone"]["id"]
    with c.lock:
        c.zone_config[(zone, "consoleproxy.url.domain")] = "consoles.example.org"
        c.zone_config[(zone, "consoleproxy.sslEnabled")] = "true"
    caplog.clear()
    spec = make_spec(1, timeouts=T)
    engine.state["console-forwards"]["outs"]["service"] = "changed"   # make the next up run it again
    engine.up(spec)
    text = warnings_of(caplog)
    assert "consoleproxy.url.domain is 'consoles.example.org'" in text and "CPVMCertificate" in text
    assert "consoleproxy.sslEnabled is true" in text and "8443" in text
    # nothing of it was changed by the registration
    assert c.zone_config[(zone, "consoleproxy.url.domain")] == "consoles.example.org"
    assert c.config["consoleproxy.url.domain"] == "" and c.config["consoleproxy.static.port"] == "8443"


def test_an_existing_stacks_console_proxy_is_moved_into_the_system_range_once(emulator, engine, ssm, caplog):
    # the stack before the range existed: its system VMs took the tenants' range
    old_spec = dataclasses.replace(not_strict(make_spec(1, timeouts=T)), system_public_range=None)
    engine.up(old_spec)
    old = console_proxy(emulator)
    assert old["publicip"] == "10.100.128.2" and value(ssm) == consoles.console_forwards("10.100.128.2")
    # the next up: the range is registered, the proxy outside it destroyed once, the new one published
    before = len(engine.log)
    engine.up(make_spec(1, timeouts=T))
    assert ("create", "system-public-range") in updates(engine, before)
    assert ("update", "console-forwards") in updates(engine, before)
    assert destroyed(emulator) == [old["id"]]
    new = console_proxy(emulator)
    assert new["id"] != old["id"] and new["publicip"] == "10.100.192.1"
    assert value(ssm) == consoles.console_forwards("10.100.192.1")
    assert "outside the system VMs' public range 10.100.192.1-10.100.192.8" in warnings_of(caplog)
    assert "console sessions are cut once" in warnings_of(caplog)
    # and never again
    before = len(engine.log)
    engine.up(make_spec(1, timeouts=T))
    assert updates(engine, before) == [] and destroyed(emulator) == [old["id"]]


def test_a_system_range_full_of_system_vms_strictly_leaves_the_console_proxy_without_an_address(
        emulator, engine, ssm):
    # a range of one address, which the secondary storage VM takes first; strict (as deployed),
    # the console proxy gets no address at all (IpAddressManagerImpl: no fallback) and never runs
    spec = make_spec(1, timeouts=T)
    spec = dataclasses.replace(spec, system_public_range=dataclasses.replace(spec.system_public_range,
                                                                             end_ip="10.100.192.1"))
    with pytest.raises(RegistrationError) as e:
        engine.up(spec)
    msg = str(e.value)
    # the zone's enabling already waits for it (wait_for_system_vms), and says which one
    assert "these system VMs do not run: console proxy: v-2-VM Stopped" in msg
    assert destroyed(emulator) == []
    assert value(ssm) == consoles.NO_CONSOLE


def test_a_system_range_full_of_system_vms_is_a_clear_error_without_a_destroy(emulator, engine, ssm):
    # a range of one address, which the secondary storage VM takes first; not (yet) strict, the
    # console proxy falls back to the tenants' range
    spec = not_strict(make_spec(1, timeouts=T))
    spec = dataclasses.replace(spec, system_public_range=dataclasses.replace(spec.system_public_range,
                                                                             end_ip="10.100.192.1"))
    with pytest.raises(RegistrationError) as e:
        engine.up(spec)
    msg = str(e.value)
    assert "outside the system VMs' public range 10.100.192.1-10.100.192.1: the range has no free address" in msg
    assert "s-1-VM (secondarystoragevm, Running) holds 10.100.192.1" in msg
    assert destroyed(emulator) == []          # a new console proxy could not get an address of it either
    assert value(ssm) == consoles.NO_CONSOLE   # nothing published outside the range


def test_a_range_full_after_one_destroy_is_a_clear_error(emulator, engine, ssm):
    spec = not_strict(make_spec(1, timeouts=T))
    engine.up(spec)
    old = console_proxy(emulator)
    zone = engine.state["zone"]["id"]
    # the console proxy is recreated while the rest of the range is taken by what listSystemVms
    # does not show: it lands in the tenants' range
    emulator.destroy_system_vm(old["id"])
    for _ in range(7):
        emulator.hold_public_ip(zone, for_system_vms=True)
    outside = console_proxy(emulator)
    assert outside["publicip"] == "10.100.128.1"
    with pytest.raises(RegistrationError) as e:
        engine.up(spec)
    msg = str(e.value)
    assert "outside the system VMs' public range 10.100.192.1-10.100.192.8, also after " + outside["name"] in msg
    assert "the range has no free address (s-1-VM (secondarystoragevm, Running) holds 10.100.192.1)" in msg
    assert destroyed(emulator) == [outside["id"]]                       # once, not in a loop
    assert value(ssm) == consoles.console_forwards(old["publicip"])     # nothing published outside the range
    emulator.release_public_ips()   # the range has room again: the next up moves the proxy into it
    engine.up(spec)
    assert value(ssm) == consoles.console_forwards(console_proxy(emulator)["publicip"])
    assert console_proxy(emulator)["publicip"].startswith("10.100.192.")


def test_no_console_proxy_within_the_bound_is_a_clear_error(emulator, engine, ssm):
    # two addresses for system VMs, two for tenants: the secondary storage VM and the console proxy
    # take the system ones
    spec = make_spec(1, timeouts=T)
    spec = dataclasses.replace(spec, public_range=PublicRangeSpec("10.100.0.1", "255.255.0.0", "10.100.128.1",
                                                                  "10.100.128.2"),
                               system_public_range=dataclasses.replace(spec.system_public_range,
                                                                       end_ip="10.100.192.2"))
    engine.up(spec)
    old = console_proxy(emulator)
    zone = engine.state["zone"]["id"]
    emulator.destroy_system_vm(old["id"])
    # the freed address goes elsewhere, and the tenants' range is full too: none left
    emulator.hold_public_ip(zone, for_system_vms=True)
    emulator.hold_public_ip(zone)
    emulator.hold_public_ip(zone)
    stuck = console_proxy(emulator, running=False)
    assert stuck["state"] == "Stopped" and not stuck.get("publicip")
    with pytest.raises(RegistrationError, match=rf"no console proxy VM runs with a public IP after 1s "
                                                rf"\(timeouts.system_vms\); CloudStack lists {stuck['name']} Stopped "
                                                rf"without a public IP.*Insufficient address capacity"):
        engine.up(spec)
    assert value(ssm) == consoles.console_forwards(old["publicip"])   # left as it was
    emulator.release_public_ips()   # the other holders are gone: the console proxy gets an address
    engine.up(spec)
    assert value(ssm) == consoles.console_forwards(console_proxy(emulator)["publicip"])


def test_destroy_writes_none_back_and_tolerates_a_missing_parameter(emulator, engine, ssm):
    engine.up(make_spec(1, timeouts=T))
    assert value(ssm) != consoles.NO_CONSOLE
    engine.destroy()
    assert value(ssm) == consoles.NO_CONSOLE
    # again, with the parameter deleted before the registration (the stack deleted it first)
    engine.up(make_spec(1, timeouts=T))
    ssm.delete_parameter(Name=PARAM)
    engine.destroy()
    with pytest.raises(ssm.exceptions.ParameterNotFound):   # not created again by the delete
        ssm.get_parameter(Name=PARAM)


def test_teardown_with_running_vms_writes_none_without_asking_cloudstack(emulator, engine, ssm):
    spec = dataclasses.replace(make_spec(1, timeouts=T), allow_destroy_with_vms=True)
    engine.up(spec)
    emulator.add_vm(emulator.host_by_ip("10.100.0.10")["id"], "doomed")
    before = len(emulator.requests)
    engine.destroy()
    assert emulator.requests[before:] == [] and value(ssm) == consoles.NO_CONSOLE


def _deny(operation: str):
    """AWS answers AccessDeniedException to `operation` of SSM (as IAM does without the permission)."""
    from botocore.awsrequest import AWSResponse

    def handler(**_kwargs):
        return (AWSResponse("https://ssm", 400, {}, None),
                {"Error": {"Code": "AccessDeniedException", "Message": f"not authorized to perform: ssm:{operation}"},
                 "ResponseMetadata": {"HTTPStatusCode": 400}})
    events = boto3._get_default_session().events
    events.register(f"before-call.ssm.{operation}", handler, unique_id=f"deny-{operation}")
    return lambda: events.unregister(f"before-call.ssm.{operation}", unique_id=f"deny-{operation}")


def test_access_denied_names_the_parameter_the_identity_and_the_permission(emulator, engine, ssm):
    undo = _deny("PutParameter")
    try:
        with pytest.raises(RegistrationError) as e:
            engine.up(make_spec(1, timeouts=T))
    finally:
        undo()
    msg = str(e.value)
    assert f"cannot write the SSM parameter {PARAM}" in msg and "AccessDeniedException" in msg
    assert "arn:aws:" in msg and "boto3's default credentials" in msg and "ssm:PutParameter" in msg
    assert value(ssm) == consoles.NO_CONSOLE


def test_a_denied_write_on_destroy_is_a_warning_not_a_failed_destroy(emulator, engine, ssm, caplog):
    engine.up(make_spec(1, timeouts=T))
    undo = _deny("PutParameter")
    try:
        engine.destroy()
    finally:
        undo()
    assert engine.state == {}
    assert any("aws ssm put-parameter" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_without_a_parameter_nothing_is_planned_and_nothing_is_written(emulator, api_secret, ssm):
    engine = Engine(emulator.url, api_secret, REGION)
    engine.up(make_spec(1, timeouts=T))
    assert "console-forwards" not in engine.state and value(ssm) == consoles.NO_CONSOLE


def test_a_parameter_deleted_by_hand_is_not_created_by_the_registration(emulator, engine, ssm):
    spec = make_spec(1, timeouts=T)
    engine.up(spec)
    ssm.delete_parameter(Name=PARAM)
    with pytest.raises(RegistrationError, match=rf"the SSM parameter {PARAM} does not exist.*the stack creates it"):
        engine.up(spec)
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=PARAM)


def test_of_several_console_proxies_the_oldest_is_forwarded_to(caplog):
    from components.registration.console_forwards import serving_proxy

    vms = [{"name": "v-9-VM", "state": "Running", "publicip": "10.100.128.9", "created": "2026-01-02T00:00:00+0000"},
           {"name": "v-2-VM", "state": "Running", "publicip": "10.100.128.2", "created": "2026-01-01T00:00:00+0000"},
           {"name": "v-1-VM", "state": "Stopped", "created": "2025-12-01T00:00:00+0000"}]
    assert serving_proxy(vms)["name"] == "v-2-VM"
    assert "v-2-VM only" in caplog.text
    assert serving_proxy(vms[2:]) is None
