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
def aws(monkeypatch):
    from moto import mock_aws

    record_parameter_writers(monkeypatch)
    with mock_aws():
        yield


def record_parameter_writers(monkeypatch) -> None:
    """moto answers LastModifiedUser "N/A" (DescribeParameters, GetParameterHistory); AWS answers
    the ARN of the principal of each PutParameter (AWS Systems Manager API Reference, ParameterHistory:
    "Amazon Resource Name (ARN) of the AWS user who last changed the parameter"), for an
    assumed role `arn:aws:sts::<account>:assumed-role/<role>/<session>`. Recorded here from the
    request's credentials as moto's GetCallerIdentity resolves them (STSBackend.get_caller_identity:
    an AssumeRole session's access key gives its assumed-role ARN)."""
    from moto.ssm.models import Parameter
    from moto.ssm.responses import SimpleSystemManagerResponse
    from moto.sts.models import sts_backends

    put, describe = SimpleSystemManagerResponse.put_parameter, Parameter.describe_response_object

    def put_parameter(self):
        result = put(self)
        caller = sts_backends[self.current_account][self.partition].get_caller_identity(
            self.get_access_key(), self.region)[1]
        self.ssm_backend.get_parameter(self._get_param("Name")).last_modified_user = caller
        return result

    def describe_response_object(self, *args, **kwargs):
        r = describe(self, *args, **kwargs)
        r["LastModifiedUser"] = getattr(self, "last_modified_user", r["LastModifiedUser"])
        return r

    monkeypatch.setattr(SimpleSystemManagerResponse, "put_parameter", put_parameter)
    monkeypatch.setattr(Parameter, "describe_response_object", describe_response_object)


@pytest.fixture
def api_secret(aws, emulator):
    import boto3

    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=SECRET_ID, SecretString=json.dumps({"apikey": emulator.apikey, "secretkey": emulator.secretkey}))
    return SECRET_ID
