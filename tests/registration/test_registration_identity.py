"""The registration uses the stack's AWS identity (aws:profile, aws:assumeRole), and missing
or denied credentials fail at once with a message about credentials (issue 9, item 10)."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from registration_engine import Engine
from registration_specs import FAST, REGION, SECRET_ID, make_spec

from components.registration import client
from components.registration.client import RegistrationError, identity_from_config
from components.registration.spec import Timeouts

PATIENT = Timeouts(**{**FAST.as_dict(), "secret_wait": 30, "api_wait": 30})


@pytest.fixture
def no_ambient_credentials(monkeypatch, tmp_path):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)   # forget credentials resolved by earlier tests
    return tmp_path


def test_identity_takes_only_the_non_secret_parts_of_the_aws_config():
    assert identity_from_config("ops", {"roleArn": "arn:aws:iam::1:role/r", "sessionName": "s", "externalId": "e",
                                        "policy": "{}", "accessKey": "AKIA..."}) == \
        {"profile": "ops", "roleArn": "arn:aws:iam::1:role/r", "sessionName": "s", "externalId": "e"}
    assert identity_from_config(None, None) == {}


def test_missing_credentials_fail_at_once(emulator, no_ambient_credentials):
    engine = Engine(emulator.url, SECRET_ID, REGION)
    start = time.monotonic()
    with pytest.raises(RegistrationError, match="no AWS credentials"):
        engine.up(make_spec(1, timeouts=PATIENT))
    assert time.monotonic() - start < 5 and emulator.requests == []


def test_the_stacks_profile_is_used(aws, emulator, no_ambient_credentials):
    (no_ambient_credentials / "credentials").write_text("[stackprof]\naws_access_key_id = testing\n"
                                                        "aws_secret_access_key = testing\n")
    boto3.Session(profile_name="stackprof", region_name=REGION).client("secretsmanager").create_secret(
        Name=SECRET_ID, SecretString=json.dumps({"apikey": emulator.apikey, "secretkey": emulator.secretkey}))
    engine = Engine(emulator.url, SECRET_ID, REGION)
    engine.deferred["aws"] = {"profile": "stackprof"}
    engine.up(make_spec(1, timeouts=FAST))
    assert len(emulator.hosts) == 1
    client.forget_connections()
    engine2 = Engine(emulator.url, SECRET_ID, REGION)
    engine2.deferred["aws"] = {"profile": "nosuchprofile"}
    with pytest.raises(RegistrationError, match="nosuchprofile"):
        engine2.up(make_spec(1, timeouts=PATIENT))


def test_the_stacks_assume_role_is_used(emulator, api_secret, monkeypatch):
    assumed = []
    real = boto3.Session.client

    def spying(self, service, *a, **kw):
        c = real(self, service, *a, **kw)
        if service == "sts":
            orig = c.assume_role

            def assume_role(**args):
                assumed.append(args)
                return orig(**args)
            c.assume_role = assume_role
        return c
    monkeypatch.setattr(boto3.Session, "client", spying)
    engine = Engine(emulator.url, api_secret, REGION)
    engine.deferred["aws"] = {"roleArn": "arn:aws:iam::123456789012:role/deployer", "externalId": "x-1"}
    engine.up(make_spec(1, timeouts=FAST))
    assert assumed == [{"RoleArn": "arn:aws:iam::123456789012:role/deployer",
                        "RoleSessionName": "cloudstack-ec2-registration", "ExternalId": "x-1"}]


def test_denied_credentials_fail_at_once(emulator, monkeypatch):
    from botocore.stub import Stubber

    sm = boto3.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name=REGION).client(
        "secretsmanager")
    stub = Stubber(sm)
    stub.add_client_error("get_secret_value", service_error_code="AccessDeniedException",
                          service_message="not authorized")
    stub.activate()

    class Session:   # AWS answering AccessDenied (moto does not enforce IAM)
        def client(self, *_a, **_k):
            return sm

    monkeypatch.setattr(client, "aws_session", lambda identity, region: Session())
    start = time.monotonic()
    with pytest.raises(RegistrationError, match="credentials of the registration may not read the API keys"):
        Engine(emulator.url, SECRET_ID, REGION).up(make_spec(1, timeouts=PATIENT))
    assert time.monotonic() - start < 5
