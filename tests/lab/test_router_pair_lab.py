"""The router pair with real packets (pairlab.py): keepalived's VRRP by unicast over the
emulated subnet, the takeover's AWS calls answered by moto, the data plane following them.

The tests run in order on one lab (module scope): router 0 starts active; it crashes
and router 1 takes over; router 0 returns and stays backup; a tenant forges adverts;
VRRP between the two is cut while both reach EC2, and healed.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time

import pytest

from .conftest import require_root
from .netlab import INTERNET_CLIENT, INTERNET_PORT, MGMT, TOOLS, UI_PORT
from .pairlab import GATEWAY, REASSERT_SECONDS, ROUTERS, TENANT, TIMER_SECONDS, PairLab, built

#: How long the clients keep echoing across a failover, and how long one echo may take
#: before a client gives its connection up (TCP's retransmissions back off: 0.2, 0.4,
#: 0.8, 1.6, 3.2 s ...: a connection that survives a 5 s outage answers within ~7 s; a
#: loaded lab machine stretches the AWS CLI's calls, and so the outage, well beyond that).
CLIENT_SECONDS = 70
ECHO_WAIT = 30


def router_0_active(lab: PairLab) -> None:
    lab.wait_for("router 0 active", lambda: lab.holders() == ["router0"])
    # Its takeover (idempotent here: the stack starts on router 0) done before anything fails.
    lab.wait_for("router 0's takeover", lambda: "this router is active" in lab.pair_log("router0"))


@pytest.fixture(scope="module")
def pair():
    require_root()
    yield from built(PairLab(), router_0_active)


def start_client(lab: PairLab, short: str, addr: str, port: int) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", lab.ns(short), sys.executable, str(TOOLS), "persist", addr,
                             str(port), str(CLIENT_SECONDS), str(ECHO_WAIT)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def events(client: subprocess.Popen) -> list[dict]:
    out, _ = client.communicate(timeout=CLIENT_SECONDS + ECHO_WAIT + 10)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def recovery(evts: list[dict], loss: float) -> tuple[float, bool]:
    """(seconds from the loss to the end of the longest pause between two echoes from the
    last echo before it on, whether the echo ending that pause came over the connection
    that was open before the loss)."""
    echoes = [e for e in evts if e["event"] == "echo"]
    before = [e for e in echoes if e["t"] < loss]
    after = [e for e in echoes if e["t"] >= loss]
    assert before, f"no echo before the loss: {evts[:5]}"
    assert after, f"no echo after the loss: {evts[-5:]}"
    run = before[-1:] + after
    _, resumed = max((b["t"] - a["t"], i) for i, (a, b) in enumerate(zip(run, run[1:])))
    return run[resumed + 1]["t"] - loss, run[resumed + 1]["conn"] == before[-1]["conn"]


def test_router_0_starts_active_and_holds_the_aws_side(pair):
    assert pair.holders() == ["router0"]
    pair.wait_for("the AWS side on router 0", lambda: pair.aws_side_on() == {"router0"})
    # The gateway address is on cloudbr0 only: VRRP itself never goes over the overlay.
    conf = (pair.root("router0") / "etc/keepalived/keepalived.conf").read_text()
    assert "interface ens5" in conf and f"unicast_peer {{\n        {ROUTERS[1].underlay}" in conf


def test_crash_of_the_active_router_moves_gateway_routes_addresses_and_traffic(pair):
    tenant = start_client(pair, "tenant", INTERNET_CLIENT, INTERNET_PORT)
    vpc = start_client(pair, "db", MGMT.overlay, UI_PORT)
    time.sleep(2)
    loss = pair.crash("router0")
    pair.wait_for("router 1 active", lambda: pair.holders() == ["router1"])
    pair.wait_for("the AWS side on router 1", lambda: pair.aws_side_on() == {"router1"})
    status = pair.ec2()
    assert set(status["routes"].values()) == {pair.eni("router1")} and len(status["routes"]) == 2
    for name, client in (("tenant -> internet", tenant), ("VPC client -> UI", vpc)):
        gap, same = recovery(events(client), loss)
        print(f"{name}: first echo {gap:.1f} s after the loss, "
              f"{'over the same TCP connection' if same else 'over a new TCP connection'}")
        assert gap < CLIENT_SECONDS


def test_the_returning_router_stays_backup_and_the_aws_side_stays_put(pair):
    pair.restore("router0")
    deadline = time.monotonic() + 8  # > 3 adverts + skew: long enough to preempt, were it allowed
    while time.monotonic() < deadline:
        assert pair.holders() == ["router1"]
        time.sleep(0.5)
    assert pair.aws_side_on() == {"router1"}
    assert "Entering BACKUP STATE" in (pair.root("router0") / "keepalived.log").read_text()


def test_a_forged_advert_from_a_tenant_changes_nothing(pair):
    before = pair.ec2()["changed"]
    refused = pair.counter("router_refused", short="router1", table="ip cloudstack_overlay")
    forged = pair.counter("forged_refused", short="router1", table="ip cloudstack_overlay")
    sent = int(pair.run("tenant", "cat", "/sys/class/net/eth0/statistics/tx_packets").stdout)
    # The highest priority for the pair's virtual router: claiming router 0's VPC address,
    # to the active router (through the tenant's gateway: that very router) and to VRRP's
    # multicast group on the overlay; and from the tenant's own address.
    for src, dst in ((ROUTERS[0].underlay, ROUTERS[1].underlay), (ROUTERS[0].underlay, "224.0.0.18"),
                     (TENANT, ROUTERS[1].underlay)):
        out = pair.tool("tenant", "vrrp", src, dst, "51", "255", GATEWAY, "10")
        assert out.stdout.strip() == "sent 10"
    assert int(pair.run("tenant", "cat", "/sys/class/net/eth0/statistics/tx_packets").stdout) >= sent + 30
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert pair.holders() == ["router1"]
        time.sleep(0.5)
    assert pair.ec2()["changed"] == before and pair.aws_side_on() == {"router1"}
    # The router's input filter drops them: a VPC source from the overlay as forged (it
    # would match the pair's own VRRP flow in conntrack), the tenant's own as a tenant's.
    assert pair.counter("forged_refused", short="router1", table="ip cloudstack_overlay") >= forged + 10
    assert pair.counter("router_refused", short="router1", table="ip cloudstack_overlay") >= refused + 10
    assert "higher priority" not in (pair.root("router1") / "keepalived.log").read_text().lower()


def settled_on(lab: PairLab, name: str, seconds: float) -> None:
    """For `seconds`: `name` alone holds the gateway and the whole AWS side, which does not change."""
    changed = lab.ec2()["changed"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert lab.holders() == [name] and lab.aws_side_on() == {name}, lab.logs()
        time.sleep(0.5)
    assert lab.ec2()["changed"] == changed, lab.logs()


def test_a_partition_where_both_reach_ec2_settles_on_router_0_and_stays_after_healing(pair):
    assert pair.holders() == ["router1"]  # since the crash above; router 0 backup
    pair.partition(True)
    try:
        # Router 0 hears no adverts, becomes active too and takes the AWS side; router 1
        # finds it moved while it was active, and yields (FAULT: the gateway leaves it).
        pair.wait_for("router 0 alone active", lambda: pair.holders() == ["router0"]
                      and pair.aws_side_on() == {"router0"}, seconds=10 * REASSERT_SECONDS + 10)
        assert "yielding to router 0" in pair.pair_log("router1")
        settled_on(pair, "router0", 4 * REASSERT_SECONDS)
    finally:
        pair.partition(False)
    pair.wait_for("router 1 back in the election", lambda: "arrive again" in pair.pair_log("router1"),
                  seconds=3 * REASSERT_SECONDS + 10)
    settled_on(pair, "router0", 3 * REASSERT_SECONDS)
    assert (pair.root("router1") / "var/lib/cloudstack-ec2/router-pair-yield").read_text().strip() == "0"
    assert "Entering BACKUP STATE" in (pair.root("router1") / "keepalived.log").read_text().rsplit("FAULT", 1)[-1]


def first_reply_after(ping_output: str, loss: float) -> float | None:
    """Seconds from `loss` to the reply that ends the longest pause in `ping -D` output
    from the last reply before the loss on (replies in flight at the loss come first);
    None without a reply on both sides of it."""
    stamps = [float(line[1:line.index("]")]) for line in ping_output.splitlines()
              if line.startswith("[") and "bytes from" in line]
    run = [t for t in stamps if t < loss][-1:] + [t for t in stamps if t >= loss]
    if len(run) < 2:
        return None
    _, end = max((b - a, b) for a, b in zip(run, run[1:]))
    return end - loss


def gateway_added_at(monitor_output: str) -> float | None:
    """When `ip -ts monitor address` first saw the gateway address added (epoch seconds)."""
    for line in monitor_output.splitlines():
        if line.startswith("[") and f" {GATEWAY}/32 " in line and "Deleted" not in line:
            return datetime.datetime.fromisoformat(line[1:line.index("]")]).timestamp()
    return None


def takeover_lines(log: str, since: float) -> list[str]:
    """The pair log's lines of calls done (with their seconds into the run) from `since` on."""
    return [line.split("router pair: ", 1)[1] for line in log.splitlines()
            if "s into this run)" in line
            and datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp() >= int(since)]


@pytest.mark.benchmark
def test_benchmark_failover_time(pair):
    """Benchmark (not a test): the time from the active router's loss to the first packet
    through the new one, for a tenant's traffic to the internet (NAT, the tenants' Elastic
    IP) and a VPC client's to the management server (the VPC route), pinging every 50 ms,
    and where it goes:

        ./scripts/test -m benchmark tests/lab/test_router_pair_lab.py      (as root)

    - detection: the loss until keepalived puts the gateway address on the new router
      (`ip monitor`): 3 x advert_int + skew, about 3.6 s for router 1, 3.4 s for router 0;
    - takeover: the gateway until the route and each Elastic IP moved (the EC2 stand-in's
      own record of its moto state): keepalived starting `router.sh vrrp MASTER`, the
      script's start, IMDS, and the AWS CLI's calls (in the lab: the CLI's start-up and
      moto's answers on a shared machine; on EC2, the API's latency and the time EC2
      takes to apply a route or an association), with the script's own account of each;
    - the first packet: the data plane following them (and, for the tenant, the
      gratuitous ARPs for the gateway)."""
    active = pair.holders()[0]
    standby = next(r.name for r in ROUTERS if r.name != active)
    # The re-assertion at EC2's period: the lab's shorter one would add its Describe calls'
    # load to the measurement several times over.
    pair.timer_seconds = TIMER_SECONDS
    for r in ROUTERS:
        pair.start_timer(r.name)
    seconds = 60
    monitor = subprocess.Popen(["ip", "-n", pair.ns(standby), "-ts", "monitor", "address"], stdout=subprocess.PIPE,
                               text=True)
    pings = {name: subprocess.Popen(["ip", "netns", "exec", pair.ns(short), "ping", "-D", "-n", "-i", "0.05", "-W", "1",
                                     "-w", str(seconds), addr], stdout=subprocess.PIPE, text=True)
             for name, short, addr in (("tenant -> internet", "tenant", INTERNET_CLIENT),
                                       ("VPC client -> management server", "db", MGMT.overlay))}
    time.sleep(2)
    loss = pair.crash(active)
    results = {name: first_reply_after(p.communicate(timeout=seconds + 10)[0], loss) for name, p in pings.items()}
    monitor.terminate()
    gateway = gateway_added_at(monitor.communicate(timeout=10)[0])
    moved = pair.ec2()["moved"]
    load = open("/proc/loadavg").read().split()[0]
    print(f"router pair failover ({active} lost, load average {load}):")
    if gateway is not None:
        print(f"  detection: the gateway on {standby} {gateway - loss:.1f} s after the loss")
        for what, at in sorted(moved.items(), key=lambda item: item[1]):
            if at >= loss:
                print(f"  takeover: {what} moved {at - gateway:.1f} s after the gateway ({at - loss:.1f} s after the loss)")
    for line in takeover_lines(pair.pair_log(standby), loss):
        print(f"    {standby}: {line}")
    for name, gap in results.items():
        print(f"  {name}: " + (f"first packet through the new router {gap:.1f} s after the loss" if gap is not None
                                else f"no packet within {seconds} s"))
    pair.restore(active)
    assert all(gap is not None for gap in results.values())
