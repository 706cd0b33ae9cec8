"""Fixtures: the CloudStack API emulator, the API keys secret (moto), fast timeouts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ → `emulator` package

from emulator.server import Emulator  # noqa: E402

from components.registration.client import forget_connections  # noqa: E402
from registration_specs import FAST, REGION, SECRET_ID  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_connections(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CLOUDSTACK_API_TRACE", raising=False)
    forget_connections()
    yield
    forget_connections()


@pytest.fixture
def emulator():
    emu = Emulator().start()
    yield emu
    emu.stop()


@pytest.fixture
def aws():
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def api_secret(aws, emulator):
    import boto3

    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=SECRET_ID, SecretString=json.dumps({"apikey": emulator.apikey, "secretkey": emulator.secretkey}))
    return SECRET_ID
