"""Fixtures for the network-namespace lab (see netlab.py for the topology)."""

from __future__ import annotations

import os

import pytest

from .netlab import Lab, LabError


def require_root() -> None:
    # CI runs as root: a lab that silently skipped would prove nothing.
    if os.geteuid() != 0:
        pytest.fail("the network lab needs root (network namespaces, nftables); run the tests as root",
                    pytrace=False)


@pytest.fixture(scope="session")
def lab():
    """The whole emulated deployment, built once; torn down even on failure."""
    require_root()
    built = Lab()
    try:
        built.build(hosts=2)
    except (LabError, OSError) as error:
        built.teardown()
        pytest.fail(f"building the lab failed: {error}", pytrace=False)
    yield built
    built.teardown()
