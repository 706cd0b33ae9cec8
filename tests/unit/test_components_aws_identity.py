"""The program passes pulumi-aws 7's aws:assumeRoles chain to the registration and refuses
the pulumi-aws 6 key aws:assumeRole before anything is created."""

from __future__ import annotations

import json

import pytest

from components.model.settings import SettingsError

CHAIN = [{"roleArn": "arn:aws:iam::123456789012:role/deployer", "externalId": "x-1", "duration": "1h"},
         {"roleArn": "arn:aws:iam::123456789012:role/cloudstack", "sessionName": "ops"}]


def _identities(d) -> list:
    """The `aws` input of every registration resource (the dynamic provider's props)."""
    return [r.inputs["aws"] for r in d.registrations if r.type.startswith("pulumi-python:dynamic/")
            and "aws" in r.inputs]


def test_the_registration_gets_the_assume_roles_chain(deploy):
    d = deploy(**{"aws:assumeRoles": json.dumps(CHAIN), "aws:profile": "ops"})
    identities = _identities(d)
    assert identities and all(i == {"profile": "ops", "assumeRoles": CHAIN} for i in identities)


def test_the_old_assume_role_key_is_refused_naming_the_new_one(deploy):
    with pytest.raises(SettingsError) as err:
        deploy(**{"aws:assumeRole": json.dumps({"roleArn": "arn:aws:iam::123456789012:role/deployer"})})
    assert "aws:assumeRole = 'arn:aws:iam::123456789012:role/deployer'" in str(err.value)
    assert "aws:assumeRoles" in str(err.value)


def test_a_malformed_chain_is_refused(deploy):
    with pytest.raises(SettingsError) as err:
        deploy(**{"aws:assumeRoles": json.dumps([{"roleArn": CHAIN[0]["roleArn"], "duration": "3600"}])})
    assert "aws:assumeRoles[0].duration = '3600'" in str(err.value)
