"""Benchmark (not a test): TCP throughput over the overlay vs the underlay.

    python -m pytest -m benchmark tests/lab/test_benchmark.py

Runs iperf3 between two lab namespaces (mgmt -> host0), first to host0's
underlay address, then to its overlay address, and prints overlay/underlay.
In the lab both paths are veth pairs on one CPU, so the ratio measures the
CPU cost of VXLAN encapsulation and the bridge hop, not EC2's network; see
docs/overlay.md for what it means there.
"""

from __future__ import annotations

import json
import shutil

import pytest

from .netlab import Lab

pytestmark = [pytest.mark.benchmark, pytest.mark.lab]

SECONDS = 3
PORT = 5201


def throughput(lab: Lab, server_ns: str, client_ns: str, address: str) -> float:
    server = lab.spawn(server_ns, "sh", "-c", f"echo READY; exec iperf3 -s -1 -B {address} -p {PORT}")
    try:
        # iperf3 listens right after starting; the client retries its connect briefly.
        for _ in range(20):
            result = lab.run(client_ns, "iperf3", "-c", address, "-p", str(PORT), "-t", str(SECONDS), "-J",
                             check=False, timeout=SECONDS + 30)
            if result.returncode == 0:
                break
            lab.run(client_ns, "sleep", "0.1")
        else:
            pytest.fail(f"iperf3 to {address} failed: {result.stdout[-500:]} {result.stderr[-500:]}")
        report = json.loads(result.stdout)
        received = report.get("end", {}).get("sum_received", {}).get("bits_per_second")
        # iperf3 has been seen to exit 0 without its end summary (server gone early).
        assert received is not None, f"iperf3 to {address} gave no end summary: {result.stdout[-800:]}"
        return received
    finally:
        lab.stop(server)


def test_overlay_to_underlay_throughput_ratio(lab: Lab, capsys):
    assert shutil.which("iperf3"), "install iperf3 (listed in .ci/apt-packages.txt)"
    host0 = lab.instances["host0"]
    underlay = throughput(lab, "host0", "mgmt", host0.underlay)
    overlay = throughput(lab, "host0", "mgmt", host0.overlay)
    ratio = overlay / underlay
    with capsys.disabled():
        print(f"\nunderlay {underlay / 1e9:.2f} Gbit/s, overlay {overlay / 1e9:.2f} Gbit/s, "
              f"overlay/underlay ratio {ratio:.2f} (overlay MTU 8450, underlay MTU 9001)")
    assert underlay > 0 and overlay > 0
