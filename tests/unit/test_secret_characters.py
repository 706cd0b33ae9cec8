"""Generated passwords and keys can be carried by cloudstack-setup-databases, which
puts them into shell command lines it builds (the boot script refuses the rest).

The values are generated at boot by the first management server
(userdata/management-server.sh new_secret_value); its generator runs here as is."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "userdata" / "management-server.sh"

# '$' and '`' are expanded by a shell; '"', '\' and whitespace break its quoting.
TOOL_UNSAFE = set('$`"\\ \t\n')


def generator() -> str:
    """The Python program new_secret_value runs (the text between python3 -c '...' "$1")."""
    body = SCRIPT.read_text().split("new_secret_value() {", 1)[1]
    return re.search(r"python3 -c '(.*?)' \"\$1\"", body, re.S).group(1)


@pytest.mark.parametrize("kind, fields, length", [
    ("db-cloud", ("password",), 32), ("keys", ("management_key", "database_key"), 32), ("admin", ("password",), 24)])
def test_generated_secrets_hold_only_characters_the_tool_can_carry(kind, fields, length):
    program = generator()
    seen = set()
    for _ in range(20):
        value = json.loads(subprocess.run(["python3", "-c", program, kind], check=True, capture_output=True,
                                          text=True).stdout)
        for field in fields:
            word = value[field]
            assert len(word) == length and not set(word) & TOOL_UNSAFE, (kind, field)
            assert any(c.islower() for c in word) and any(c.isupper() for c in word) and any(c.isdigit() for c in word)
            seen.add(word)
    assert len(seen) == 20 * len(fields), "every value is new"
