"""Whatever a user types for any key, `plan` answers with a plan (exit 0) or with problems
(exit 2): never a traceback (hypothesis, over every key the program reads)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.model.settings import KEYS

from planrun import cli

#: Every key the program reads: its own, and the `aws:` keys it reads besides the provider.
READ_KEYS = [k.name for k in KEYS] + ["aws:region", "aws:profile", "aws:assumeRoles", "aws:assumeRole"]

#: Text near what people type: the keys' own defaults and examples, mangled, and random text.
NEAR = st.sampled_from([str(k.default) for k in KEYS] + [
    "eu-west-1", "eu-west-1a", "US-EAST-1", "c5n.large", "m5.metal", "db.t4g.medium", "10.0.0.0/16",
    "239.255.0.100", "1000-1999", "true", "4.22", "tcp:2222:10.100.128.5:22@anywhere", '["203.0.113.7/32"]'])
#: Never empty: an empty value is the key's default, which the stacks' own plans cover.
VALUES = st.one_of(
    st.text(min_size=1, max_size=40),
    st.tuples(NEAR, st.text(min_size=1, max_size=3)).map("".join),
    st.tuples(st.text(min_size=1, max_size=3), NEAR).map("".join),
)


@pytest.mark.parametrize("key", READ_KEYS)
@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=VALUES)
def test_any_value_of_any_key_plans_or_is_refused(capsys, key, value):
    result = cli(capsys, "plan", "--stack", "dev", "--set", f"{key}={value}")
    assert "Traceback" not in result.stderr + result.stdout, (key, value, result.stderr[-3000:])
    assert result.returncode in (0, 2), (key, value, result.stderr[-3000:])
