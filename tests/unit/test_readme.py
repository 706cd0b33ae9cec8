"""README keeps its promises: two commands at the top, every key with its default, live links."""

import json
import os
import re
from pathlib import Path

from components.model.settings import KEYS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def shown_default(default) -> str:
    if default is None:
        return "(none)"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, list):
        return json.dumps(default)
    return str(default) if default != "" else "(empty)"


def test_every_config_key_documented_with_its_default():
    for key in KEYS:
        row = f"| `{key.name}` | `{shown_default(key.default)}` |"
        assert row in README, f"README lacks the row for {key.name}: {row}"


def test_the_first_code_block_holds_exactly_the_two_commands():
    block = re.search(r"```sh\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["./scripts/deploy", "./scripts/test"]
    for command in commands:
        assert os.access(ROOT / command, os.X_OK), command


def test_ci_runs_the_readme_test_command():
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_local_links_exist():
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)\)", README):
        assert (ROOT / target).exists(), target


def test_dev_stack_sets_only_known_keys():
    import yaml

    config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    known = {k.name for k in KEYS}
    for name in config:
        namespace, key = name.split(":", 1)
        assert namespace in ("aws", "cloudstack-ec2"), name
        if namespace == "cloudstack-ec2":
            assert key in known, name


def github_anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_table_of_contents_lists_every_section_and_every_link_has_a_target():
    headings = re.findall(r"^#{2,3} (.+)$", README, re.M)
    anchors = {github_anchor(h) for h in headings}
    contents = README[README.index("## Contents"):]
    contents = contents[:contents.index("\n## ", 1)]
    for heading in re.findall(r"^## (.+)$", README, re.M):
        if heading != "Contents":
            assert f"(#{github_anchor(heading)})" in contents, f"## {heading} is missing from the contents"
    for target in re.findall(r"\]\(#([^)]+)\)", README):
        assert target in anchors, f"#{target} names no heading"


def test_stack_examples_name_stack_files_that_exist():
    for text in (README, (ROOT / "scripts" / "deploy").read_text()):
        for stack in re.findall(r"STACK=([\w-]+)", text):
            assert (ROOT / f"Pulumi.{stack}.yaml").is_file(), f"STACK={stack}: no Pulumi.{stack}.yaml"


def test_the_command_is_shown_where_the_install_steps_put_it():
    # scripts/deploy and scripts/test install the program into .venv, not onto PATH.
    bare = re.findall(r"(?<![/\w-])cloudstack-ec2 (?:plan|preview|up|refresh|destroy|outputs)\b", README)
    assert not bare, bare
