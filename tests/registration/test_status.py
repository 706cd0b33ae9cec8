"""`cloudstack-ec2 status`: the zone's live state read from the CloudStack API emulator with
signed requests (keys from the api-keys secret, moto), as a table and as JSON; a host Down
and its alert; a clear error naming the URL when the API does not answer."""

from __future__ import annotations

import argparse
import io
import json
import socket

import pytest

from components.cli import status
from components.cli.commands import build_parser
from components.model import status as model
from registration_engine import Engine
from registration_specs import FAST, REGION, make_spec


def run(emulator_url: str, secret: str, *flags: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(["status", "--stack", "dev", *flags])
    out, err = io.StringIO(), io.StringIO()
    code = status.status_command(args, out, err, connection=lambda a: (emulator_url, secret, REGION))
    return code, out.getvalue(), err.getvalue()


def registered(emulator, api_secret, hosts: int = 2):
    Engine(emulator.url, api_secret, REGION).up(make_spec(hosts, timeouts=FAST))


def test_a_healthy_zone(emulator, api_secret):
    registered(emulator, api_secret)
    code, out, err = run(emulator.url, api_secret)
    assert code == 0, err
    assert out.startswith(f"CloudStack at {emulator.url}: healthy\n")
    assert "Management servers:" in out and "Open alerts: none" in out
    lines = out.splitlines()
    hosts = lines[lines.index("Hosts:") + 2:lines.index("Hosts:") + 4]
    assert all(" Up " in line for line in hosts), hosts
    # Every request was signed with the secret's keys (the emulator refuses others with 401).
    assert all(r["status"] == 200 for r in emulator.requests if r.get("command", "").startswith("list"))


def test_a_host_down_and_its_alert(emulator, api_secret):
    registered(emulator, api_secret)
    down = next(iter(emulator.hosts.values()))
    emulator.kill_host(down["ipaddress"], "Down")
    code, out, err = run(emulator.url, api_secret, "--json")
    assert code == 3, err
    report = json.loads(out)
    assert report["healthy"] is False
    states = {h["name"]: h["state"] for h in report["hosts"]}
    assert states[down["name"]] == "Down" and sorted(states.values()) == ["Down", "Up"]
    [alert] = report["alerts"]
    assert down["name"] in alert["description"] and alert["type"] == "ALERT.HOST"
    # The host that is down no longer counts in the zone's capacity (CapacityManagerImpl).
    cpu = next(c for c in report["capacity"] if c["type"] == "CPU")
    up = [h for h in emulator.hosts.values() if h["state"] == "Up"]
    assert cpu["total"] == sum(emulator._host_view(h)["cpunumber"] * emulator._host_view(h)["cpuspeed"] for h in up)
    # The table says the same.
    code, table, _ = run(emulator.url, api_secret)
    assert code == 3 and "NEEDS ATTENTION" in table and "Host disconnected" in table


def test_report_lists_system_vms_and_capacity_per_type(emulator, api_secret):
    registered(emulator, api_secret, hosts=1)
    code, out, err = run(emulator.url, api_secret, "--json")
    report = json.loads(out)
    assert {v["type"] for v in report["systemVms"]} == {"secondarystoragevm", "consoleproxy"}
    assert {c["type"] for c in report["capacity"]} >= {"CPU", "memory", "public IPs"}
    [server] = report["managementServers"]
    assert server["state"] == "Up"
    assert [h["vms"] for h in report["hosts"]] == [len([v for v in emulator.vms.values()
                                                        if v["type"] == "User"])]


def test_unreachable_api_names_the_url(aws, api_secret):
    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/client/api"
    code, out, err = run(url, api_secret)
    assert code == 1 and out == ""
    assert f"cannot read the zone from CloudStack's API at {url}" in err


def test_render_shows_every_section():
    report = model.zone_report("http://x/client/api", [{"name": "m", "state": "Up", "version": "4.22.0.0"}],
                               [{"id": "h", "name": "kvm-1", "state": "Up", "version": "4.22.0.0",
                                 "clustername": "c1"}], {"h": 3}, [], [{"type": 4, "capacityused": 1,
                                                                       "capacitytotal": 4, "percentused": "25"}], [])
    text = model.render(report)
    assert "kvm-1" in text and "public IPs" in text and "25.0" in text and "System VMs: none" in text
    assert report["healthy"] is True
    assert model.zone_report("u", [], [], {}, [], [], [])["healthy"] is False  # no management server


def test_status_is_a_command():
    args = build_parser().parse_args(["status", "--stack", "prod", "--json"])
    assert args.handler is status.status_command and args.stack == "prod" and args.json
    assert isinstance(args, argparse.Namespace)


def test_help_names_what_status_needs_and_its_exit_statuses(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["status", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "api_keys secret" in text and "adminCidrs" in text
    assert "exit status: 0 all Up and no open alert; 3 something needs attention; 1 the API" in text
    assert "2 the stack cannot be read" in text
