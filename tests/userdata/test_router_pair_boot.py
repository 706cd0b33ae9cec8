"""The router pair on the boot side (userdata/router.sh): keepalived's configuration as
the boot writes it, and the takeover keepalived runs, against the recording fakes
(the AWS side: fakes/fake.py ec2; the instance metadata: fakes/fake.py imds)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from bootlab import FAKE, ROUTER, ROUTER_OVERLAY, Machine, render, ud
from components.model import alarms, ipplan, monitoring

OWN_ENI, PEER_ENI = "eni-0aaaaaaaaaaaaaaa0", "eni-0bbbbbbbbbbbbbbb0"
MAC = "0a:00:00:00:00:10"
TABLES = ("rtb-0123456789abcdef0", "rtb-0123456789abcdef1")
ALLOCATIONS = {"infrastructure": "eipalloc-0000000000000000a", "console": "eipalloc-0000000000000000b",
               "tenant": "eipalloc-0000000000000000c"}
PRIMARY, CONSOLE, TENANT = "10.0.0.10", "10.0.0.11", "10.0.0.12"
PEER, PEER_CONSOLE, PEER_TENANT = "10.0.0.13", "10.0.0.14", "10.0.0.15"
OVERLAY_CIDR = "10.100.0.0/16"
GATEWAY = "10.100.0.1"
VPC = "vpc-0123456789abcdef0"


def pair_boot(index: int = 0) -> ud.RouterBoot:
    own = ipplan.router_pair_address(ipplan.IPv4Network(OVERLAY_CIDR), index)
    overlay = dataclasses.replace(ROUTER_OVERLAY, overlay_address=f"{own}/16", console_address=CONSOLE,
                                  tenant_address=TENANT)
    pair = ud.RouterPairBoot(index=index, peer_private_ip=PEER, route_table_ids=TABLES,
                             eip_allocations=dict(ALLOCATIONS))
    return dataclasses.replace(ROUTER, overlay=overlay, pair=pair)


def peer_holds_everything() -> dict:
    """The AWS side as the other router left it: both route tables and the three addresses on its ENI."""
    return {"route_tables": {t: {OVERLAY_CIDR: PEER_ENI, "0.0.0.0/0": "igw-1"} for t in TABLES},
            "addresses": {ALLOCATIONS["infrastructure"]: {"eni": PEER_ENI, "private": PEER},
                          ALLOCATIONS["console"]: {"eni": PEER_ENI, "private": PEER_CONSOLE},
                          ALLOCATIONS["tenant"]: {"eni": PEER_ENI, "private": PEER_TENANT}},
            "enis": {OWN_ENI: [PRIMARY, CONSOLE, TENANT], PEER_ENI: [PEER, PEER_CONSOLE, PEER_TENANT]}}


def router_machine(tmp_path, devices) -> Machine:
    """A router's machine whose interfaces carry `devices` ([device, address/prefix]),
    with the instance metadata of its ENI and the AWS side on the other router."""
    m = Machine(tmp_path)
    # `ip` is one of bootlab's faked commands already
    (m.bin / "keepalived").symlink_to(FAKE)

    def world(s):
        s["imds"] = {"mac": MAC, f"network/interfaces/macs/{MAC}/interface-id": OWN_ENI, "local-ipv4": PRIMARY,
                     f"network/interfaces/macs/{MAC}/vpc-id": VPC}
        s["ip_addresses"] = devices
        s["ec2"] = peer_holds_everything()
    m.update(world)
    return m


@pytest.fixture
def machine(tmp_path):
    m = router_machine(tmp_path, [["ens5", f"{PRIMARY}/24"], ["cloudbr0", "10.100.63.254/16"]])
    r = m.run_user_data(render(pair_boot()))
    assert r.status == 0, r.output
    m.boot_calls = m.calls()
    m.clear_calls()
    return m


def holds_gateway(machine: Machine, held: bool) -> None:
    """keepalived's doing: the gateway address on cloudbr0 of the active router only."""
    def change(s):
        entry = ["cloudbr0", f"{GATEWAY}/32"]
        s["ip_addresses"] = [a for a in s["ip_addresses"] if a != entry] + ([entry] if held else [])
    machine.update(change)


def ec2_calls(machine: Machine, op: str | None = None) -> list[list[str]]:
    return [c["args"] for c in machine.calls() if c["cmd"] == "aws" and "ec2" in c["args"]
            and (op is None or op in c["args"])]


def everything_ours(machine: Machine) -> bool:
    world = machine.state()["ec2"]
    return (all(t[OVERLAY_CIDR] == OWN_ENI for t in world["route_tables"].values())
            and world["addresses"] == {ALLOCATIONS["infrastructure"]: {"eni": OWN_ENI, "private": PRIMARY},
                                       ALLOCATIONS["console"]: {"eni": OWN_ENI, "private": CONSOLE},
                                       ALLOCATIONS["tenant"]: {"eni": OWN_ENI, "private": TENANT}})


def test_boot_installs_keepalived_and_writes_a_configuration_keepalived_accepts(machine):
    state = machine.state()
    assert "keepalived" in state["packages"]
    conf = machine.file("/etc/keepalived/keepalived.conf").read_text()
    for line in ("state BACKUP", "nopreempt", "interface ens5", "priority 150", "advert_int 1",
                 f"unicast_src_ip {PRIMARY}", f"{GATEWAY}/32 dev cloudbr0", "vrrp_check_unicast_src",
                 "notify_master_rx_lower_pri", "garp_master_refresh 10"):
        assert line in conf
    assert f"unicast_peer {{\n        {PEER}\n    }}" in conf
    # VRRP's password protects nothing: never configured.
    assert "authentication" not in conf and "auth_pass" not in conf
    assert "keepalived.service" in state["units"]["enabled"]
    assert "cloudstack-ec2-router-pair.timer" in state["units"]["enabled"]
    timer = machine.file("/etc/systemd/system/cloudstack-ec2-router-pair.timer").read_text()
    assert "OnUnitActiveSec=30s" in timer
    assert any(c["cmd"] == "keepalived" and "--config-test" in c["args"] for c in machine.boot_calls)


def test_a_configuration_naming_a_missing_device_stops_the_boot(tmp_path):
    m = router_machine(tmp_path, [["ens5", f"{PRIMARY}/24"]])  # the overlay never came up: no cloudbr0
    r = m.run_user_data(render(pair_boot()))
    assert r.status == 1 and "keepalived --config-test refused" in r.output
    assert not m.file("/etc/keepalived/keepalived.conf").exists()


def test_boot_asks_ec2_whether_the_role_may_make_every_takeover_call_and_changes_nothing(machine):
    dry = [c["args"] for c in machine.boot_calls if c["cmd"] == "aws" and "--dry-run" in c["args"]]
    routes = [a for a in dry if "replace-route" in a]
    addresses = [a for a in dry if "associate-address" in a]
    assert sorted(a[a.index("--route-table-id") + 1] for a in routes) == sorted(TABLES)
    assert sorted(a[a.index("--allocation-id") + 1] for a in addresses) == sorted(ALLOCATIONS.values())
    assert all(a[a.index("--network-interface-id") + 1] == OWN_ENI for a in routes + addresses)
    assert machine.state()["ec2"] == peer_holds_everything()


@pytest.mark.parametrize("denied", ["replace-route", "associate-address"])
def test_a_role_that_may_not_take_over_stops_the_boot_before_keepalived(tmp_path, denied):
    m = router_machine(tmp_path, [["ens5", f"{PRIMARY}/24"], ["cloudbr0", "10.100.63.254/16"]])
    m.update(lambda s: s["ec2"].__setitem__("denied", [denied]))
    r = m.run_user_data(render(pair_boot()))
    assert r.status == 1
    assert "no failover would work" in r.output and "UnauthorizedOperation" in r.output
    assert "keepalived.service" not in m.state().get("units", {}).get("enabled", [])
    asked = [c for c in m.calls() if c["cmd"] == "aws" and denied in c["args"]]
    assert len(asked) == 4  # a new role's policy may still be on its way: asked again, a bounded number of times


def test_router_1_has_the_lower_priority(machine):
    machine.update(lambda s: s["ip_addresses"].__setitem__(0, ["ens5", f"{PRIMARY}/24"]))
    boot = pair_boot(1)
    (machine.root / "etc/cloudstack-ec2/boot.env").write_text(
        "".join(f'{k}="{v}"\n' for k, v in ud.router_environment(boot).items()))
    r = machine.rerun("router.sh", args=["keepalived-config"])
    assert r.status == 0, r.output
    assert "priority 100" in r.output and "router_id cloudstack-ec2-router1" in r.output


def test_master_takes_every_route_and_address_to_its_own_interface(machine):
    holds_gateway(machine, True)
    r = machine.rerun("router.sh", args=["vrrp", "MASTER"])
    assert r.status == 0, r.output
    assert everything_ours(machine)
    routes = ec2_calls(machine, "replace-route")
    assert sorted(a[a.index("--route-table-id") + 1] for a in routes) == sorted(TABLES)
    for call in ec2_calls(machine, "associate-address"):
        assert "--allow-reassociation" in call
    log = machine.file("/var/log/cloudstack-ec2-router-pair.log").read_text()
    assert "this router is active" in log and "imds-token-1" not in log


def filter_matches(pattern: str, event: str) -> bool:
    """CloudWatch Logs' match of an unstructured event by a pattern of terms (CloudWatch Logs
    User Guide, "Filter pattern syntax for metric filters": every term must occur, a quoted
    term as the exact phrase, case-sensitively). Other syntax (OR, -, ?, JSON or
    space-delimited selectors, regular expressions) is refused rather than guessed."""
    assert not re.search(r"\?|^\s*[\[{%]| -|\bOR\b|\bAND\b", pattern), f"syntax this check does not know: {pattern}"
    terms = re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', pattern)
    return all((quoted or bare) in event for quoted, bare in terms)


def test_the_takeover_alarm_counts_the_line_a_router_becoming_master_writes(machine):
    pair_log = machine.file(monitoring.ROUTER_PAIR_LOG)
    holds_gateway(machine, True)
    for state in ("BACKUP", "FAULT"):
        assert machine.rerun("router.sh", args=["vrrp", state]).status == 0
    assert pair_log.read_text() and not any(
        filter_matches(alarms.ROUTER_TAKEOVER_PATTERN, line) for line in pair_log.read_text().splitlines())
    assert machine.rerun("router.sh", args=["vrrp", "MASTER"]).status == 0
    lines = pair_log.read_text().splitlines()
    matched = [line for line in lines if filter_matches(alarms.ROUTER_TAKEOVER_PATTERN, line)]
    assert len(matched) == 1 and "this router is active" not in matched[0]


def test_master_twice_changes_nothing_more(machine):
    holds_gateway(machine, True)
    assert machine.rerun("router.sh", args=["vrrp", "MASTER"]).status == 0
    first = machine.state()["ec2"]
    assert machine.rerun("router.sh", args=["vrrp", "MASTER"]).status == 0
    assert machine.state()["ec2"] == first and everything_ours(machine)


def test_backup_and_fault_leave_the_aws_side_alone(machine):
    holds_gateway(machine, False)
    for state in ("BACKUP", "FAULT"):
        assert machine.rerun("router.sh", args=["vrrp", state]).status == 0
    assert ec2_calls(machine) == []
    assert machine.state()["ec2"] == peer_holds_everything()


def test_a_router_without_the_gateway_takes_nothing_even_if_told_master(machine):
    # keepalived moved on (BACKUP) before the MASTER script got to run.
    holds_gateway(machine, False)
    r = machine.rerun("router.sh", args=["vrrp", "MASTER"])
    assert r.status == 1
    assert ec2_calls(machine) == [] and machine.state()["ec2"] == peer_holds_everything()


def test_a_failing_call_is_retried_a_bounded_number_of_times(machine):
    holds_gateway(machine, True)
    machine.update(lambda s: s["ec2"].__setitem__("failures", {"replace-route": ["RequestLimitExceeded"] * 2}))
    r = machine.rerun("router.sh", args=["vrrp", "MASTER"])
    assert r.status == 0, r.output
    assert everything_ours(machine)
    assert len(ec2_calls(machine, "replace-route")) == len(TABLES) + 2

    machine.clear_calls()
    machine.update(lambda s: s["ec2"].update(peer_holds_everything(),
                                             failures={"associate-address": ["UnauthorizedOperation"] * 20}))
    r = machine.rerun("router.sh", args=["vrrp", "MASTER"])
    assert r.status == 1
    assert len(ec2_calls(machine, "associate-address")) == 3 * 4  # PAIR_ATTEMPTS per address
    assert "takeover incomplete" in r.output


def test_reassert_takes_back_only_what_points_elsewhere(machine):
    holds_gateway(machine, True)
    assert machine.rerun("router.sh", args=["vrrp", "MASTER"]).status == 0
    machine.clear_calls()
    assert machine.rerun("router.sh", args=["reassert"]).status == 0
    assert ec2_calls(machine, "replace-route") == [] and ec2_calls(machine, "associate-address") == []

    # The other router's late takeover moved a route and the console address.
    def moved(s):
        s["ec2"]["route_tables"][TABLES[1]][OVERLAY_CIDR] = PEER_ENI
        s["ec2"]["addresses"][ALLOCATIONS["console"]] = {"eni": PEER_ENI, "private": PEER_CONSOLE}
    machine.update(moved)
    r = machine.rerun("router.sh", args=["reassert"])
    assert r.status == 0, r.output
    assert everything_ours(machine)
    assert "re-asserting" in r.output


def test_reassert_on_the_backup_calls_nothing_while_the_active_routers_adverts_arrive(machine):
    holds_gateway(machine, False)
    machine.update(lambda s: s.update(nft_counters={"peer_adverts": [5, 200]}))
    assert machine.rerun("router.sh", args=["reassert"]).status == 0
    # The first run counts no adverts before it: it asks EC2 about the other router only.
    assert [c for c in ec2_calls(machine) if "describe-instances" not in c] == []
    machine.clear_calls()
    machine.update(lambda s: s.update(nft_counters={"peer_adverts": [9, 360]}))
    assert machine.rerun("router.sh", args=["reassert"]).status == 0
    assert ec2_calls(machine) == []


PEER_INSTANCE = "i-0bbbbbbbbbbbbbbb0"
YIELD_FILE = "/var/lib/cloudstack-ec2/router-pair-yield"


def as_router(machine: Machine, index: int) -> None:
    """The machine's boot.env as router `index`'s."""
    (machine.root / "etc/cloudstack-ec2/boot.env").write_text(
        "".join(f'{k}="{v}"\n' for k, v in ud.router_environment(pair_boot(index)).items()))


def split_brain(machine: Machine, index: int, peer_state: list[str]) -> None:
    """Router `index` became active and took the whole AWS side; then the other router,
    whose instance is in `peer_state` ([state, system check, instance check]), took it back
    while no adverts arrived from it (its counter stays at 5)."""
    as_router(machine, index)
    holds_gateway(machine, True)
    machine.update(lambda s: s.update(nft_counters={"peer_adverts": [5, 200]}))
    assert machine.rerun("router.sh", args=["vrrp", "MASTER"]).status == 0
    assert everything_ours(machine)

    def taken_back(s):
        s["ec2"].update(peer_holds_everything(), attachments={PEER_ENI: PEER_INSTANCE},
                        instances={PEER_INSTANCE: peer_state})
    machine.update(taken_back)
    machine.clear_calls()


def mutating_calls(machine: Machine) -> list[list[str]]:
    return ec2_calls(machine, "replace-route") + ec2_calls(machine, "associate-address")


def test_in_a_split_brain_router_1_yields_to_a_running_router_0_and_keepalived_goes_to_fault(machine):
    split_brain(machine, 1, ["running", "ok", "ok"])
    r = machine.rerun("router.sh", args=["reassert"])
    assert r.status == 0, r.output
    assert "yielding to router 0" in r.output
    assert mutating_calls(machine) == [] and machine.state()["ec2"]["route_tables"] == peer_holds_everything()["route_tables"]
    assert machine.file(YIELD_FILE).read_text().strip() == "1"
    # Yielded: the next periods leave the AWS side alone while nothing changes.
    machine.clear_calls()
    assert machine.rerun("router.sh", args=["reassert"]).status == 0
    assert mutating_calls(machine) == [] and machine.file(YIELD_FILE).read_text().strip() == "1"


def test_in_a_split_brain_router_0_never_yields(machine):
    split_brain(machine, 0, ["running", "ok", "ok"])
    r = machine.rerun("router.sh", args=["reassert"])
    assert r.status == 0, r.output
    assert everything_ours(machine) and "re-asserting" in r.output
    assert not machine.file(YIELD_FILE).exists() or machine.file(YIELD_FILE).read_text().strip() == "0"


@pytest.mark.parametrize("peer_state", [["stopped", "not-applicable", "not-applicable"],
                                        ["running", "impaired", "ok"], ["running", "ok", "impaired"]])
def test_router_1_does_not_yield_to_a_router_0_that_is_not_running_healthy(machine, peer_state):
    split_brain(machine, 1, peer_state)
    r = machine.rerun("router.sh", args=["reassert"])
    assert r.status == 0, r.output
    assert everything_ours(machine) and "yielding" not in r.output


def test_router_1_does_not_yield_when_it_had_not_held_the_aws_side_since_becoming_active(machine):
    split_brain(machine, 1, ["running", "ok", "ok"])
    # keepalived went BACKUP and MASTER again since: no move it saw while active.
    holds_gateway(machine, False)
    assert machine.rerun("router.sh", args=["vrrp", "BACKUP"]).status == 0
    holds_gateway(machine, True)
    r = machine.rerun("router.sh", args=["reassert"])
    assert r.status == 0, r.output
    assert everything_ours(machine) and "yielding" not in r.output


@pytest.mark.parametrize("healed", ["adverts", "peer stopped"])
def test_a_yielded_router_1_comes_back_when_adverts_arrive_or_router_0_stops(machine, healed):
    split_brain(machine, 1, ["running", "ok", "ok"])
    assert machine.rerun("router.sh", args=["reassert"]).status == 0
    assert machine.file(YIELD_FILE).read_text().strip() == "1"
    holds_gateway(machine, False)  # keepalived in FAULT
    if healed == "adverts":
        machine.update(lambda s: s.update(nft_counters={"peer_adverts": [9, 360]}))
    else:
        machine.update(lambda s: s["ec2"]["instances"].__setitem__(PEER_INSTANCE, ["stopped", "ok", "ok"]))
    r = machine.rerun("router.sh", args=["reassert"])
    assert r.status == 0, r.output
    assert "back to the election" in r.output
    assert machine.file(YIELD_FILE).read_text().strip() == "0"
    assert mutating_calls(machine) == []  # keepalived's election decides, then its MASTER script


# --- a router without the pair beside a new one (routerCount 1 -> 2) -------------------------

OLD_ROUTER = "i-0aaaaaaaaaaaaaaa0"


def launched_router(pair: bool, state: str = "running") -> dict:
    """The instance at the other router's address as EC2 describes it: its state and the
    user data it was launched with (a router's, with or without the pair settings)."""
    boot = pair_boot(0) if pair else ROUTER
    return {"private": PEER, "vpc": VPC, "state": state, "user_data": ud.decode_user_data(render(boot))}


@pytest.fixture
def beside_a_router_without_the_pair(tmp_path):
    """Router 1 booting while router 0 still runs the one-router boot it started with."""
    m = router_machine(tmp_path, [["ens5", f"{PRIMARY}/24"], ["cloudbr0", "10.100.63.255/16"]])
    m.update(lambda s: s["ec2"].update(launched={OLD_ROUTER: launched_router(pair=False)}))
    r = m.run_user_data(render(pair_boot(1)))
    assert r.status == 0, r.output
    m.boot_output = r.output
    m.clear_calls()
    return m


def test_a_new_router_beside_a_router_without_the_pair_holds_back_before_keepalived_starts(
        beside_a_router_without_the_pair):
    m = beside_a_router_without_the_pair
    assert "holding back" in m.boot_output
    # keepalived starts in FAULT (its track file non-zero): never the gateway, never the AWS side.
    assert m.file(YIELD_FILE).read_text().strip() == "2"
    conf = m.file("/etc/keepalived/keepalived.conf").read_text()
    assert f'file "{m.root}/var/lib/cloudstack-ec2/router-pair-yield"' in conf and "weight 0" in conf
    assert m.state()["ec2"]["route_tables"] == peer_holds_everything()["route_tables"]
    # Still there at the next period: still holding back, nothing taken.
    assert m.rerun("router.sh", args=["reassert"]).status == 0
    assert m.file(YIELD_FILE).read_text().strip() == "2" and mutating_calls(m) == []


@pytest.mark.parametrize("replaced", ["terminated", "new router 0 with the pair"])
def test_the_held_router_comes_back_once_the_router_without_the_pair_is_gone(beside_a_router_without_the_pair,
                                                                            replaced):
    m = beside_a_router_without_the_pair

    def replace(s):
        s["ec2"]["launched"][OLD_ROUTER]["state"] = "terminated"
        if replaced != "terminated":
            s["ec2"]["launched"]["i-0cccccccccccccccc0"] = launched_router(pair=True)
    m.update(replace)
    r = m.rerun("router.sh", args=["reassert"])
    assert r.status == 0, r.output
    assert "back to the election" in r.output and m.file(YIELD_FILE).read_text().strip() == "0"
    assert mutating_calls(m) == []  # keepalived's election, then its MASTER script, take over


def test_a_router_whose_peer_booted_with_the_pair_does_not_hold_back(tmp_path):
    m = router_machine(tmp_path, [["ens5", f"{PRIMARY}/24"], ["cloudbr0", "10.100.63.255/16"]])
    m.update(lambda s: s["ec2"].update(launched={OLD_ROUTER: launched_router(pair=True)}))
    r = m.run_user_data(render(pair_boot(1)))
    assert r.status == 0, r.output
    assert "holding back" not in r.output
    assert not m.file(YIELD_FILE).exists() or m.file(YIELD_FILE).read_text().strip() == "0"


def test_a_boot_that_cannot_ask_ec2_about_the_other_router_does_not_start_keepalived(tmp_path):
    m = router_machine(tmp_path, [["ens5", f"{PRIMARY}/24"], ["cloudbr0", "10.100.63.255/16"]])
    m.update(lambda s: s["ec2"].update(failures={"describe-instances": ["UnauthorizedOperation"] * 10}))
    r = m.run_user_data(render(pair_boot(1)))
    assert r.status == 1 and "it could make a second gateway" in r.output
    assert "keepalived.service" not in m.state().get("units", {}).get("enabled", [])
