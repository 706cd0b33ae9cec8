"""Fixtures of the boot-script tests (helpers: bootlab.py)."""

import pytest

from bootlab import Machine


@pytest.fixture
def machine(tmp_path) -> Machine:
    return Machine(tmp_path)
