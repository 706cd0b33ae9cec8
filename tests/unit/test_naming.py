"""Per-stack names shared by the program and the boot scripts."""

import pytest

from components import naming


def test_names_derive_from_the_stack():
    assert naming.stack_prefix("dev") == "/cloudstack-ec2/dev"
    assert naming.parameter_name("dev", naming.PARAM_DB_ENDPOINT) == "/cloudstack-ec2/dev/db-endpoint"
    assert naming.secret_name_prefix("dev", naming.SECRET_API_KEYS) == "cloudstack-ec2/dev/api-keys-"


@pytest.mark.parametrize("stack", ["a/b", "", "-dev", "x" * 64])
def test_bad_stack_names_are_refused(stack):
    with pytest.raises(ValueError, match="stack name"):
        naming.stack_prefix(stack)


def test_only_known_parameters():
    with pytest.raises(ValueError, match="admin"):
        naming.parameter_name("dev", "admin")
