"""The registration uses the stack's AWS identity (aws:profile, pulumi-aws 7's aws:assumeRoles
chain, with credentials that refresh themselves), and missing
or denied credentials fail at once with a message about credentials."""

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
    roles = [{"roleArn": "arn:aws:iam::1:role/a", "sessionName": "s", "externalId": "e", "duration": "1h",
              "accessKey": "AKIA...", "secretKey": "x"},
             {"roleArn": "arn:aws:iam::2:role/b", "policy": "{}"}]
    assert identity_from_config("ops", roles) == {
        "profile": "ops",
        "assumeRoles": [{"roleArn": "arn:aws:iam::1:role/a", "sessionName": "s", "externalId": "e", "duration": "1h"},
                        {"roleArn": "arn:aws:iam::2:role/b", "policy": "{}"}]}
    assert identity_from_config(None, None) == {}


@pytest.mark.parametrize("text,seconds", [("1h", 3600), ("15m", 900), ("1h30m", 5400), ("3600s", 3600),
                                          ("1.5h", 5400), ("12h", 43200)])
def test_durations_are_read_as_go_durations(text, seconds):
    assert client.duration_seconds(text) == seconds


def test_the_old_assume_role_key_and_bad_entries_are_named():
    problems = client.identity_problems(None, {"roleArn": "arn:aws:iam::1:role/old"})
    assert [(k, v) for k, v, _ in problems] == [("aws:assumeRole", "arn:aws:iam::1:role/old")]
    assert "aws:assumeRoles" in problems[0][2]
    bad = client.identity_problems([{"roleArn": "arn:aws:iam::1:role/a", "duration": "3600"},
                                    {"sessionName": "x"}, {"roleArn": "arn:aws:iam::1:role/c", "duration": "13h"}],
                                   None)
    assert [k for k, _, _ in bad] == ["aws:assumeRoles[0].duration", "aws:assumeRoles[1]",
                                      "aws:assumeRoles[2].duration"]
    assert client.identity_problems({"roleArn": "arn"}, None)[0][0] == "aws:assumeRoles"
    assert client.identity_problems([{"roleArn": "arn:aws:iam::1:role/a", "duration": "1h"}], None) == []


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


def _assume_role_calls(monkeypatch) -> list[tuple[str, str, dict]]:
    """Record every STS AssumeRole botocore sends: (role, caller identity of the credentials
    it is sent with, parameters)."""
    from botocore.credentials import AssumeRoleCredentialFetcher

    calls: list[tuple[str, str, dict]] = []
    real = AssumeRoleCredentialFetcher._get_credentials

    def spying(self):
        source = self._source_credentials.get_frozen_credentials()
        caller = boto3.client("sts", region_name=REGION, aws_access_key_id=source.access_key,
                              aws_secret_access_key=source.secret_key,
                              aws_session_token=source.token).get_caller_identity()["Arn"]
        kwargs = self._assume_role_kwargs()
        calls.append((kwargs["RoleArn"], caller, {k: v for k, v in kwargs.items() if k != "RoleArn"}))
        return real(self)

    monkeypatch.setattr(AssumeRoleCredentialFetcher, "_get_credentials", spying)
    return calls


#: Both roles in moto's one account (it keeps the API-keys secret per account).
CHAIN = [{"roleArn": "arn:aws:iam::123456789012:role/deployer", "externalId": "x-1", "duration": "1h"},
         {"roleArn": "arn:aws:iam::123456789012:role/cloudstack", "sessionName": "ops", "duration": "30m",
          "tags": {"team": "cloud"}}]


def test_the_stacks_assume_roles_are_chained(emulator, api_secret, monkeypatch):
    # pulumi-aws 7: aws:assumeRoles, each role assumed with the previous one's credentials.
    calls = _assume_role_calls(monkeypatch)
    engine = Engine(emulator.url, api_secret, REGION)
    engine.deferred["aws"] = identity_from_config(None, CHAIN)
    engine.up(make_spec(1, timeouts=FAST))   # reads the API keys as the last role of the chain
    assert len(emulator.hosts) == 1
    session = client.aws_session(engine.deferred["aws"], REGION)
    assert session.client("sts").get_caller_identity()["Arn"] == \
        "arn:aws:sts::123456789012:assumed-role/cloudstack/ops"
    assert [(role, caller) for role, caller, _ in calls] == [
        ("arn:aws:iam::123456789012:role/deployer", "arn:aws:sts::123456789012:user/moto"),
        ("arn:aws:iam::123456789012:role/cloudstack",
         "arn:aws:sts::123456789012:assumed-role/deployer/cloudstack-ec2-registration")]
    assert calls[0][2] == {"RoleSessionName": "cloudstack-ec2-registration", "ExternalId": "x-1",
                           "DurationSeconds": 3600}
    assert calls[1][2] == {"RoleSessionName": "ops", "DurationSeconds": 1800,
                           "Tags": [{"Key": "team", "Value": "cloud"}]}


def test_assumed_credentials_are_renewed_before_they_expire(aws, monkeypatch):
    # The registration can wait longer than an STS session lasts (1 hour by default).
    import datetime

    import botocore.credentials

    calls = _assume_role_calls(monkeypatch)
    session = client.aws_session(identity_from_config(None, CHAIN[:1]), REGION)
    first = session.get_credentials().get_frozen_credentials().access_key
    assert len(calls) == 1
    # 50 minutes later, 10 minutes before the 1-hour session ends (botocore asks _local_now
    # at run time; the session's credentials hold the clock they were made with). moto's
    # new credentials expire an hour after the real now, so they are again near their end.
    later = botocore.credentials._local_now() + datetime.timedelta(minutes=50)
    monkeypatch.setattr(botocore.credentials, "_local_now", lambda: later)
    session.get_credentials()._time_fetcher = lambda: later
    assert session.client("sts").get_caller_identity()["Arn"].startswith(
        "arn:aws:sts::123456789012:assumed-role/deployer/")
    assert len(calls) >= 2 and session.get_credentials().get_frozen_credentials().access_key != first


def test_a_role_that_cannot_be_assumed_is_named(aws, monkeypatch):
    from botocore.credentials import AssumeRoleCredentialFetcher
    from botocore.exceptions import ClientError

    def denied(self):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized to perform sts:AssumeRole"}},
                          "AssumeRole")

    monkeypatch.setattr(AssumeRoleCredentialFetcher, "_get_credentials", denied)
    with pytest.raises(RegistrationError, match="deployer -> .*cloudstack \\(aws:assumeRoles\\).*AccessDenied"):
        client.aws_session(identity_from_config(None, CHAIN), REGION)


def test_inputs_of_the_old_assume_role_key_are_refused_naming_the_new_one(aws):
    with pytest.raises(RegistrationError, match="aws:assumeRoles"):
        client.aws_session({"roleArn": "arn:aws:iam::123456789012:role/deployer"}, REGION)


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


def test_the_chain_starts_from_the_stacks_profile(aws, no_ambient_credentials, monkeypatch):
    (no_ambient_credentials / "credentials").write_text("[stackprof]\naws_access_key_id = AKIAPROFILE0000\n"
                                                        "aws_secret_access_key = testing\n")
    from botocore.credentials import AssumeRoleCredentialFetcher

    sources = []
    real = AssumeRoleCredentialFetcher._create_client

    def recording(self):
        sources.append(self._source_credentials.get_frozen_credentials().access_key)
        return real(self)

    monkeypatch.setattr(AssumeRoleCredentialFetcher, "_create_client", recording)
    session = client.aws_session(identity_from_config("stackprof", CHAIN[:1]), REGION)
    assert session.client("sts").get_caller_identity()["Arn"].startswith(
        "arn:aws:sts::123456789012:assumed-role/deployer/")
    assert sources == ["AKIAPROFILE0000"]
