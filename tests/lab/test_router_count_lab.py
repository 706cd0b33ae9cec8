"""routerCount 1 -> 2 with real packets (pairlab.py): router 0 still runs the one-router
boot it was launched with (the gateway address its own, no keepalived) when router 1
joins; router 1 holds back, so the overlay never has two gateways, until router 0 is
replaced, when router 1 takes the gateway and the AWS side over.

The tests run in order on one lab (module scope).
"""

from __future__ import annotations

import time

import pytest

from .conftest import require_root
from .pairlab import REASSERT_SECONDS, PairLab, built


@pytest.fixture(scope="module")
def growing():
    require_root()
    yield from built(PairLab(name="grow", router0_single=True),
                     lambda lab: lab.wait_for("router 1 holding back", lambda: "holding back" in lab.pair_log("router1")))


def test_router_1_holds_back_beside_a_router_without_the_pair(growing):
    # Several re-assertion periods and keepalived's 3 x advert_int: router 0 alone answers
    # for the gateway, and the AWS side stays on it.
    changed = growing.ec2()["changed"]
    deadline = time.monotonic() + 3 * REASSERT_SECONDS + 4
    while time.monotonic() < deadline:
        assert growing.gateways() == ["router0"], growing.logs()
        time.sleep(0.5)
    assert growing.aws_side_on() == {"router0"} and growing.ec2()["changed"] == changed
    assert (growing.root("router1") / "var/lib/cloudstack-ec2/router-pair-yield").read_text().strip() == "2"
    # keepalived started in FAULT (its track file non-zero) and never became MASTER.
    assert "Entering MASTER STATE" not in (growing.root("router1") / "keepalived.log").read_text()


def test_once_router_0_is_replaced_router_1_takes_gateway_and_aws_side(growing):
    # The update that replaces router 0: EC2 stops the old instance and terminates it.
    for dev in ("ens5", "ethovl0", "cloudbr0"):
        growing.ip("router0", "link", "set", dev, "down")
    growing.run("vpcr", "aws", "--region", "eu-west-1", "ec2", "terminate-instances", "--instance-ids",
                growing.ids["instances"][0], env=growing.script_env("router1"))
    growing.wait_for("router 1 active", lambda: growing.holders() == ["router1"]
                     and growing.aws_side_on() == {"router1"}, seconds=6 * REASSERT_SECONDS + 20)
    assert growing.gateways() == ["router1"]
    assert "back to the election" in growing.pair_log("router1")
