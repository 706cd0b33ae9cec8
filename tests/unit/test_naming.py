"""Per-stack names shared by the program and the boot scripts."""

import pytest

from components.model import naming


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


def test_parameter_root_carries_the_deployment_id():
    assert naming.parameter_root("dev", "0a1b2c3d") == "/cloudstack-ec2/dev/0a1b2c3d"
    assert naming.parameter_name("dev", naming.PARAM_EFS_DNS, "0a1b2c3d") == "/cloudstack-ec2/dev/0a1b2c3d/efs-dns"
    # A stack deployed before the id existed.
    assert naming.parameter_root("dev") == "/cloudstack-ec2/dev"


@pytest.mark.parametrize("bad", ["0A1B2C3D", "0a1b2c3", "0a1b2c3d9", "../x"])
def test_bad_deployment_ids_are_refused(bad):
    with pytest.raises(ValueError, match="deployment id"):
        naming.parameter_root("dev", bad)


def test_boot_scripts_accept_both_roots():
    from components.boot import checks

    assert checks.check_prefix("prefix", "/cloudstack-ec2/dev/0a1b2c3d")
    assert checks.check_prefix("prefix", "/cloudstack-ec2/dev")
    with pytest.raises(checks.UserDataError):
        checks.check_prefix("prefix", "/cloudstack-ec2/dev/0a1b2c3d/x")
