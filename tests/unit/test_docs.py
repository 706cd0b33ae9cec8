"""The documents under docs/ agree with the code they describe and run the tests one way."""

import re
from pathlib import Path

from components.registration.spec import default_global_settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))


def test_registration_doc_has_a_row_for_every_global_setting():
    settings_table = (ROOT / "docs" / "registration.md").read_text()
    for setting in default_global_settings("10.100.0.2", "10.100.0.0/16"):
        assert re.search(rf"^\| [^|]*`{re.escape(setting.name)}`", settings_table, re.M), setting.name


def test_every_document_runs_the_tests_through_scripts_test():
    for path in [ROOT / "README.md", *DOCS, *sorted((ROOT / "tests").rglob("*.py"))]:
        text = path.read_text()
        assert not re.search(r"python3? -m pytest", text), f"{path.relative_to(ROOT)}: use ./scripts/test"
