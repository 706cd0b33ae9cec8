"""The management servers' console forwards publisher (userdata/console-forwards.sh) against the
CloudStack API emulator and moto (server mode, so the script's AWS CLI reaches the same SSM and
Secrets Manager as the registration): the console proxy recreated by CloudStack with a new address
of the system VMs' public range reaches the router's parameter without a `pulumi up`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from registration_engine import Engine
from registration_specs import FAST, REGION, SECRET_ID, make_spec

from components import boot as ud
from components.model import consoles
from components.registration.client import forget_connections
from components.registration.console_forwards import unpublish
from components.registration.spec import Timeouts

PREFIX = "/cloudstack-ec2/test"
PARAM = f"{PREFIX}/console-forwards"
RANGE = "10.100.192.1-10.100.192.8"
T = Timeouts(**{**FAST.as_dict(), "system_vms": 1.0})
AWS_CLI = Path(__file__).with_name("aws_cli.py")
SYSTEM_PATH = "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def moto_endpoint(monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's backends live in this process, beyond one server: start from an empty account
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"))
    # boto3's own setting of the endpoint of every service (AWS SDKs and Tools Reference Guide,
    # "Service-specific endpoints": AWS_ENDPOINT_URL): the registration's and the stand-in CLI's
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    forget_connections()
    yield f"http://{host}:{port}"
    forget_connections()
    server.stop()


@pytest.fixture
def cloud(emulator, moto_endpoint, tmp_path):
    """A registered zone with its console proxy published, and one management server's files:
    console-forwards.sh and common.sh as the user data installs them, library.sh as stage 2
    installs it (the bucket's copy, byte for byte), its boot.env, an `aws`."""
    sm, ssm = boto3.client("secretsmanager", region_name=REGION), boto3.client("ssm", region_name=REGION)
    sm.create_secret(Name=SECRET_ID, SecretString=json.dumps({"apikey": emulator.apikey,
                                                             "secretkey": emulator.secretkey}))
    ssm.put_parameter(Name=PARAM, Value=consoles.NO_CONSOLE, Type="String")
    engine = Engine(emulator.url, SECRET_ID, REGION)
    engine.deferred.update(console_forwards_parameter=PARAM, console_address="203.0.113.20")
    emulator.seed_configuration("consoleproxy.static.publicIp", "203.0.113.20")
    emulator.seed_configuration("consoleproxy.static.port", "80")
    engine.up(make_spec(1, timeouts=T))
    root = tmp_path / "root"
    lib, etc, bin_ = root / ud.LIB_DIR.lstrip("/"), root / ud.ETC_DIR.lstrip("/"), tmp_path / "bin"
    for d in (lib, etc, bin_):
        d.mkdir(parents=True)
    files = ud.load_boot_files()
    for name in ("common.sh", "console-forwards.sh"):
        (lib / name).write_text(ud.embedded_script(name, files[name]))
        (lib / name).chmod(0o755)
    (lib / "library.sh").write_text(files["library.sh"])
    (etc / "boot.env").write_text("".join(f'{k}="{v}"\n' for k, v in {
        "CSEC2_ENV_ROLE": "management", "CSEC2_AWS_REGION": REGION, "CSEC2_PREFIX": PREFIX,
        "CSEC2_SECRET_API_KEYS": SECRET_ID, "CSEC2_ZONE_NAME": "zone1", "CSEC2_SYSTEM_PUBLIC_RANGE": RANGE}.items()))
    (bin_ / "aws").write_text(f"#!/bin/sh\nexec {sys.executable} {AWS_CLI} \"$@\"\n")
    (bin_ / "aws").chmod(0o755)
    return {"engine": engine, "ssm": ssm, "sm": sm, "root": root, "bin": bin_, "script": lib / "console-forwards.sh"}


def publish(cloud, emulator):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CSEC2_")},
           "PATH": f"{cloud['bin']}:{SYSTEM_PATH}", "CSEC2_ROOT": str(cloud["root"]), "CSEC2_API_URL": emulator.url}
    return subprocess.run([str(cloud["script"])], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=60)


def value(cloud) -> str:
    return cloud["ssm"].get_parameter(Name=PARAM)["Parameter"]["Value"]


def version(cloud) -> int:
    return cloud["ssm"].get_parameter(Name=PARAM)["Parameter"]["Version"]


def console_proxy(emulator, other_than: str = "") -> dict:
    end = time.monotonic() + 2
    while True:
        with emulator.lock:
            emulator._advance()
            vms = [dict(v) for v in emulator.vms.values() if v["type"] == "ConsoleProxy" and v["id"] != other_than]
        if vms and vms[0]["state"] == "Running" or time.monotonic() > end:
            return vms[0]
        time.sleep(0.02)


def recreate(emulator, cloud) -> tuple[dict, dict]:
    """The console proxy destroyed (as destroySystemVm's job does: expunged, its address Free) and another system VM
    taking the old address meanwhile: the new console proxy gets the range's next free one."""
    old = console_proxy(emulator)
    emulator.destroy_system_vm(old["id"])
    emulator.hold_public_ip(cloud["engine"].state["zone"]["id"], for_system_vms=True)
    return old, console_proxy(emulator, other_than=old["id"])


def test_a_recreated_console_proxy_reaches_the_parameter_in_one_run(emulator, cloud):
    first = console_proxy(emulator)
    assert value(cloud) == consoles.console_forwards(first["publicip"])
    # nothing changed: nothing written
    before = version(cloud)
    r = publish(cloud, emulator)
    assert r.returncode == 0 and r.stdout == "", r.stdout
    assert version(cloud) == before
    old, new = recreate(emulator, cloud)
    assert new["publicip"] == "10.100.192.3" != old["publicip"]
    r = publish(cloud, emulator)
    assert r.returncode == 0, r.stdout
    assert value(cloud) == consoles.console_forwards("10.100.192.3")
    assert f"{PARAM} = {consoles.console_forwards('10.100.192.3')} (console proxy {new['name']}" in r.stdout
    assert emulator.secretkey not in r.stdout and emulator.apikey not in r.stdout
    # signed as CloudStack checks it: the emulator answered (HTTP 401 otherwise)
    assert [q["status"] for q in emulator.requests if q["command"] == "listSystemVms"][-1] == 200
    # the second run writes nothing
    written = version(cloud)
    r = publish(cloud, emulator)
    assert r.returncode == 0 and r.stdout == "", r.stdout
    assert version(cloud) == written
    # and the registration's next update sees nothing to do
    log = len(cloud["engine"].log)
    cloud["engine"].up(make_spec(1, timeouts=T))
    assert cloud["engine"].log[log:] == []


def test_none_in_the_parameter_stops_it(emulator, cloud):
    # what the registration writes back when the cloud is torn down (its zone still there then)
    unpublish(dict(cloud["engine"].state["console-forwards"]["outs"]))
    assert value(cloud) == consoles.NO_CONSOLE
    recreate(emulator, cloud)
    asked = len(emulator.requests)
    r = publish(cloud, emulator)
    assert r.returncode == 0 and r.stdout == "", r.stdout
    assert value(cloud) == consoles.NO_CONSOLE
    assert emulator.requests[asked:] == []


def test_rotated_keys_are_followed_and_unknown_ones_refused(emulator, cloud):
    recreate(emulator, cloud)
    cloud["sm"].put_secret_value(SecretId=SECRET_ID, SecretString=json.dumps({"apikey": emulator.apikey,
                                                                               "secretkey": "not-the-key"}))
    r = publish(cloud, emulator)
    assert r.returncode == 1 and "unable to verify user credentials and/or request signature" in r.stdout
    assert "not-the-key" not in r.stdout
    assert value(cloud) != consoles.console_forwards("10.100.192.3")
    # the user's keys rotated (registerUserKeys: the old pair stops working) and stored in the
    # secret: the next run signs with the new ones
    with emulator.lock:
        keys = emulator._cmd_registerUserKeys({"id": emulator.key_owner[emulator.apikey]})["userkeys"]
    cloud["sm"].put_secret_value(SecretId=SECRET_ID, SecretString=json.dumps(keys))
    r = publish(cloud, emulator)
    assert r.returncode == 0, r.stdout
    assert value(cloud) == consoles.console_forwards("10.100.192.3")
