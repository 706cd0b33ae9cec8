"""The management server's console forwards publisher (userdata/console-forwards.sh), run for
real against recording fakes: the timer the boot starts, the signed API request, and the SSM
parameter <prefix>/console-forwards written only when the serving console proxy's address
(inside the system VMs' public range) differs from it."""

import json
import os
import re
import stat

import pytest

from bootlab import PREFIX, SECRETS, SYSTEM_PUBLIC_RANGE, index_of, is_cmd, render, MANAGEMENT
from components import boot as ud
from components.model import consoles
from components.registration.console_forwards import serving_proxy

PARAM = f"{PREFIX}/console-forwards"
PUBLISHER = "console-forwards.sh"
TIMER = "cloudstack-ec2-console-forwards.timer"
KEYS = {"apikey": "api-1", "secretkey": "sec-1"}


def proxy(ip, name="v-2-VM", state="Running", created="2026-12-07T01:00:00+0000", type_="consoleproxy"):
    """A SystemVmResponse as listSystemVms answers it (fields without a value left out)."""
    vm = {"id": f"id-{name}", "name": name, "systemvmtype": type_, "state": state, "zonename": "zone1",
          "created": created}
    return {**vm, "publicip": ip} if ip else vm


@pytest.fixture
def booted(machine):
    """A management server after its first boot, the cloud bootstrapped (its bootstrap policies
    deleted), the registration's value in the parameter and the console proxy at .2."""
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output

    def seed(s):
        assert s["iam"]["policies"] == []
        s["ssm"][PARAM] = consoles.console_forwards("10.100.192.2")
        s["api"]["system_vms"] = [proxy("10.100.192.2"), proxy("10.100.192.1", "s-1-VM", type_="secondarystoragevm")]
    machine.update(seed)
    machine.clear_calls()
    return machine


def publish(machine):
    lib = machine.root / ud.LIB_DIR.lstrip("/")
    return machine._run([str(lib / PUBLISHER)], 60)


def puts(machine):
    return [c for c in machine.calls() if c["cmd"] == "aws" and "put-parameter" in c["args"]]


def recreated(machine, ip, **kw):
    machine.update(lambda s: s["api"].update(system_vms=[proxy(ip, **kw)]))


def test_the_boot_installs_the_publisher_and_starts_its_timer_once_the_api_keys_are_stored(machine):
    r = machine.run_user_data(render(MANAGEMENT))
    assert r.status == 0, r.output
    calls = machine.calls()
    stored = index_of(calls, lambda c: c["cmd"] == "aws" and "put-secret-value" in c["args"], "keys stored")
    started = index_of(calls, is_cmd("systemctl", "enable", "--now", TIMER), "timer started")
    assert stored < started
    script = machine.file(f"{ud.LIB_DIR}/{PUBLISHER}")
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    timer = machine.file(f"{ud.UNIT_DIR}/{TIMER}").read_text()
    # within a minute of a change: every 30 s, and systemd's default accuracy (1 min) not left to slip it
    assert "OnUnitActiveSec=30s" in timer and "AccuracySec=1s" in timer
    service = machine.file(f"{ud.UNIT_DIR}/cloudstack-ec2-console-forwards.service").read_text()
    assert f"ExecStart={ud.LIB_DIR}/{PUBLISHER}" in service
    env = machine.file("/etc/cloudstack-ec2/boot.env").read_text()
    assert f'CSEC2_SYSTEM_PUBLIC_RANGE="{SYSTEM_PUBLIC_RANGE}"' in env


def test_without_a_range_no_timer_is_started(machine):
    from dataclasses import replace
    r = machine.run_user_data(render(replace(MANAGEMENT, system_public_range="")))
    assert r.status == 0, r.output
    assert not any(TIMER in c["args"] for c in machine.calls() if c["cmd"] == "systemctl")


def test_a_recreated_console_proxy_is_published_once_with_a_signed_request(booted):
    recreated(booted, "10.100.192.3", name="v-7-VM")
    r = publish(booted)
    assert r.status == 0, r.output
    assert booted.state()["ssm"][PARAM] == consoles.console_forwards("10.100.192.3")
    assert f"console forwards: {PARAM} = {consoles.console_forwards('10.100.192.3')} (console proxy v-7-VM; was " \
           f"{consoles.console_forwards('10.100.192.2')})" in r.output
    calls = booted.calls()
    signed = [c for c in calls if c.get("signed")]
    assert [c["api"] for c in signed] == ["listSystemVms"]
    # the keys never on a command line, nor in the log; the request file in a root-only directory, gone
    for c in calls:
        assert not any(k in " ".join(c["args"]) for k in KEYS.values()), c
    assert not any(k in r.output for k in KEYS.values())
    assert os.path.basename(os.path.dirname(signed[0]["url_file"])).startswith("cloudstack-ec2.")
    assert not os.path.exists(signed[0]["url_file"])
    # the second run writes nothing
    booted.clear_calls()
    r = publish(booted)
    assert r.status == 0 and r.output == "", r.output
    assert puts(booted) == []


def test_the_value_is_the_registrations_rule_and_the_routers_format(booted):
    """Of several console proxies, the one serving_proxy picks; written as console_forwards writes
    it, each entry as router.sh's CONSOLE_ENTRY accepts it."""
    vms = [proxy("10.100.192.4", "v-9-VM", created="2026-12-07T02:00:00+0000"),
           proxy("10.100.192.5", "v-3-VM", state="Stopped", created="2026-12-07T00:00:00+0000"),
           proxy(None, "v-4-VM", created="2026-12-06T00:00:00+0000"),
           proxy("10.100.192.6", "v-8-VM", created="2026-12-07T01:30:00+0000"),
           {**proxy("10.100.192.7", "v-5-VM", created="2026-12-05T00:00:00+0000"), "zonename": "zone2"}]
    booted.update(lambda s: s["api"].update(system_vms=vms))
    r = publish(booted)
    assert r.status == 0, r.output
    value = booted.state()["ssm"][PARAM]
    ours = [v for v in vms if v["zonename"] == "zone1"]
    assert value == consoles.console_forwards(serving_proxy(ours)["publicip"]) == \
        consoles.console_forwards("10.100.192.6")
    entry = re.search(r"^CONSOLE_ENTRY='(.*)'$", ud.load_boot_files()["router.sh"], re.M).group(1)
    assert all(re.fullmatch(entry.strip("^$"), e) for e in value.split(" "))
    assert consoles.forwarded_proxy(value) == "10.100.192.6"


@pytest.mark.parametrize("vms, reason", [
    ([proxy("10.100.128.9")], "outside the system VMs' public range 10.100.192.1-10.100.192.8"),
    ([proxy(None, state="Starting")], "zone zone1 has no console proxy running with a public IP"),
    ([], "zone zone1 has no console proxy running with a public IP"),
])
def test_no_serving_proxy_inside_the_range_writes_nothing(booted, vms, reason):
    booted.update(lambda s: s["api"].update(system_vms=vms))
    r = publish(booted)
    assert r.status == 0, r.output
    assert reason in r.output and "console forwards left as they are" in r.output
    assert booted.state()["ssm"][PARAM] == consoles.console_forwards("10.100.192.2") and puts(booted) == []


def test_none_in_the_parameter_stops_it_before_any_call(booted):
    """consoles.NO_CONSOLE: before the registration's first write, and what a teardown writes back."""
    booted.update(lambda s: s["ssm"].update({PARAM: consoles.NO_CONSOLE}))
    recreated(booted, "10.100.192.3")
    r = publish(booted)
    assert r.status == 0 and r.output == "", r.output
    assert booted.state()["ssm"][PARAM] == consoles.NO_CONSOLE
    assert [c["args"][:2] for c in booted.calls() if c["cmd"] in ("aws", "curl")] == \
        [["--region", "eu-west-1"]]   # the parameter's read only
    assert not any(c.get("signed") for c in booted.calls())


def test_rotated_keys_are_read_at_every_run(booted):
    # keys the server no longer knows: refused, nothing written, the unit fails
    booted.update(lambda s: s["secrets"].update({SECRETS.api_keys: json.dumps({"apikey": "old", "secretkey": "x"})}))
    recreated(booted, "10.100.192.3")
    r = publish(booted)
    assert r.status == 1 and "unable to verify user credentials and/or request signature" in r.output
    assert puts(booted) == []

    # a new key pair, registered and stored: the next run signs with it
    def rotate(s):
        s["api"]["user_keys"] = {"api-2": "sec-2"}
        s["secrets"][SECRETS.api_keys] = json.dumps({"apikey": "api-2", "secretkey": "sec-2"})
    booted.update(rotate)
    r = publish(booted)
    assert r.status == 0, r.output
    assert booted.state()["ssm"][PARAM] == consoles.console_forwards("10.100.192.3")


def test_the_api_down_fails_the_run_and_writes_nothing(booted):
    booted.update(lambda s: s["api"].update(up=False))
    recreated(booted, "10.100.192.3")
    r = publish(booted)
    assert r.status == 1 and "console forwards not checked: the API on" in r.output and "did not answer" in r.output
    assert "boot FAILED" not in r.output   # not the boot's failure: the unit's, in its journal
    assert puts(booted) == []
