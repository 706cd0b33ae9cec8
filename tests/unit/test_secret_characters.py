"""Generated passwords and keys can be carried by cloudstack-setup-databases, which
puts them into shell command lines it builds (the boot script refuses the rest)."""

from __future__ import annotations

# Not imported from conftest: several test folders have a conftest module, and which one
# `import conftest` finds depends on collection order.
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"

# '$' and '`' are expanded by a shell; '"', '\' and whitespace break its quoting.
TOOL_UNSAFE = set('$`"\\ \t\n')


def test_generated_secrets_hold_only_characters_the_tool_can_carry(deploy):
    passwords = deploy().of_type(RANDOM_PASSWORD)
    assert len(passwords) >= 5  # db master, db cloud, management key, database key, admin
    for reg in passwords:
        special = reg.inputs.get("special", True)
        allowed_special = set(reg.inputs.get("overrideSpecial", "!@#$%&*()-_=+[]{}<>:?")) if special else set()
        assert not allowed_special & TOOL_UNSAFE, f"{reg.name} may generate {allowed_special & TOOL_UNSAFE}"
        assert not set(reg.state["result"]) & TOOL_UNSAFE, reg.name
