"""A stack's config as Pulumi hands it to the program, read without the Pulumi CLI.

Pure module (no Pulumi import), used by the offline `plan` command so that the plan
and `pulumi up` see the same values:

* Stack file (`Pulumi.<stack>.yaml`): the CLI reads it with gopkg.in/yaml.v2 and first
  unmarshals each value into a Go string (pulumi/pulumi sdk/go/common/resource/config/
  value.go, `unmarshalValue`); yaml.v2 sets a string from any non-null scalar's own text
  (`out.SetString(n.value)` in yaml.v2 decode.go). So `4.20` reaches the program as
  "4.20", `no` as "no", `8450` as "8450", and an empty value as "". A list or map is
  passed as its JSON text; `{secure: ...}` is a secret the CLI decrypts.
* `--set KEY=VALUE`: what `pulumi config set KEY VALUE` stores, a string; KEY without a
  namespace is in the project's; `--set 'KEY[N]=VALUE'` is `pulumi config set --path`
  on a list (N may be the next free index).
* pulumi.Config.get returns those strings (sdk/python/lib/pulumi/config.py); the
  program (components.model.settings) converts and validates them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.model.settings import HIDDEN, holds_secret
from components.model.suggest import nearest

#: Namespaces the program or its providers read. Anything else is almost surely a
#: typo of the project's namespace (`cloudstack:hostCount`), which Pulumi would pass
#: on and the program would never read.
PROVIDER_NAMESPACES = ("aws", "random", "command", "pulumi")

_PATH_KEY = re.compile(r"^(?P<key>[^\[\]]+)\[(?P<index>\d+)\]$")


class StackConfigError(ValueError):
    """A stack file or a --set that cannot be read; the message names the file or the --set."""


#: The top-level keys of a stack file (Pulumi's ProjectStack: pulumi/pulumi
#: sdk/go/common/workspace/project.go; the Automation API's StackSettings,
#: sdk/python/lib/pulumi/automation/_stack_settings.py). Only `config:` reaches the program
#: as config, so a setting written anywhere else would be lost without a word.
STACK_FILE_KEYS = ("config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment")


class MissingStackError(StackConfigError):
    """No `Pulumi.<stack>.yaml`; `existing` names the stacks that have one."""

    def __init__(self, stack: str, stack_file: Path, existing: list[str]):
        self.stack, self.existing = stack, existing
        if existing:
            there = (f"the stacks here are {', '.join(existing)}; for a new stack copy one's file "
                     f"(cp Pulumi.{existing[0]}.yaml {stack_file.name}) and edit it")
        else:
            there = (f"{stack_file.parent} has no Pulumi.<stack>.yaml; write {stack_file.name} with your settings "
                     "under `config:`")
        super().__init__(f"{stack_file} not found: the stack {stack!r} has no settings file ({there})")


def stack_names(project_dir: Path) -> list[str]:
    """The stacks with a settings file `Pulumi.<stack>.yaml` in `project_dir`, sorted."""
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in project_dir.glob("Pulumi.?*.yaml"))


def _check_top_level(stack_file: Path, keys: list, project: str) -> None:
    """Refuse top-level keys the CLI ignores: `project:key` written without its `config:`
    wrapper (the whole setting would be lost silently), or a misspelt section."""
    unknown = [str(k) for k in keys if k not in STACK_FILE_KEYS]
    if not unknown:
        return
    settings = [k for k in unknown if ":" in k]
    if settings:
        shown = ", ".join(settings[:3]) + (f" and {len(settings) - 3} more" if len(settings) > 3 else "")
        raise StackConfigError(f"{stack_file}: {shown} at the top level: settings go under `config:` (indent "
                               f"them below a line `config:`); there Pulumi never passes them to the program")
    raise StackConfigError(f"{stack_file}: top-level key(s) {', '.join(unknown)} are not stack file sections; a stack "
                           f"file has {', '.join(STACK_FILE_KEYS)} (settings as {project}:<key> under `config:`)")


@dataclass
class StackConfig:
    """{"namespace:key": text} as the program receives it, and where each value came from."""

    project: str
    values: dict[str, str] = field(default_factory=dict)
    #: key -> "Pulumi.dev.yaml" or "--set KEY=VALUE"
    origins: dict[str, str] = field(default_factory=dict)
    #: keys holding a secret (`secure:`); their plain text is unknown offline
    secrets: set[str] = field(default_factory=set)
    #: keys written as a plain YAML number (4.20): another YAML reader would see 4.2
    yaml_numbers: dict[str, str] = field(default_factory=dict)

    def full_key(self, key: str) -> str:
        return key if ":" in key else f"{self.project}:{key}"


def read_stack(project_dir: Path, stack: str) -> StackConfig:
    """Read Pulumi.yaml's project name and Pulumi.<stack>.yaml's config, as the CLI does.

    Raises StackConfigError naming the file for a missing file or bad YAML."""
    project_file = project_dir / "Pulumi.yaml"
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    if not project_file.is_file():
        raise StackConfigError(f"{project_file} not found: run from the project directory or pass --dir")
    if not stack_file.is_file():
        raise MissingStackError(stack, stack_file, stack_names(project_dir))
    project_doc = _load(project_file)
    if not isinstance(project_doc, dict) or not isinstance(project_doc.get("name"), str):
        raise StackConfigError(f"{project_file}: expected a mapping with the project's `name`")
    result = StackConfig(project=project_doc["name"])
    node = _compose(stack_file)
    _refuse_duplicate_keys(stack_file, node)
    config_node = None
    if node is not None:
        if not isinstance(node, yaml.MappingNode):
            raise StackConfigError(f"{stack_file}: expected a mapping with a `config:` section")
        _check_top_level(stack_file, [k.value for k, _ in node.value], project_doc["name"])
        config_node = next((v for k, v in node.value if k.value == "config"), None)
    if config_node is None or _is_null(config_node):
        return result
    if not isinstance(config_node, yaml.MappingNode):
        raise StackConfigError(f"{stack_file}: `config:` must be a mapping of namespace:key to value")
    for key_node, value_node in config_node.value:
        key = key_node.value
        if ":" not in str(key):
            # pulumi's config.ParseKey refuses it: keys are `<namespace>:<name>`.
            raise StackConfigError(f"{stack_file}: config key {key!r} has no namespace: write "
                                   f"{result.project}:{key} (keys are <namespace>:<name>)")
        result.origins[key] = stack_file.name
        if isinstance(value_node, yaml.ScalarNode):
            # Go's yaml.v2: a null becomes "", any other scalar its own text.
            result.values[key] = "" if _is_null(value_node) else value_node.value
            if value_node.style is None and value_node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
                result.yaml_numbers[key] = value_node.value
            continue
        value = _construct(value_node)
        if _has_secure(value):
            result.secrets.add(key)
            continue
        result.values[key] = json.dumps(value, default=str)
    return result


def apply_set(config: StackConfig, assignment: str) -> str:
    """Apply one `--set KEY=VALUE` (as `pulumi config set`, `[N]` as `--path`); return the full key.

    Raises StackConfigError naming the --set. The value of a key that holds a secret
    (settings.holds_secret) is shown as "(hidden)" in the origin and in every message."""
    key, sep, value = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise StackConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set hostCount=3")
    match = _PATH_KEY.match(key)
    secret = holds_secret(config.full_key(match.group("key") if match else key))
    shown = f"{key}={HIDDEN}" if secret else assignment
    if match:
        full = config.full_key(match.group("key"))
        index = int(match.group("index"))
        current = config.values.get(full, "") or "[]"
        try:
            items = json.loads(current)
        except json.JSONDecodeError:
            items = None
        if not isinstance(items, list):
            raise StackConfigError(f"--set {shown!r}: {full} is not a list ({HIDDEN if secret else current!r})")
        if index > len(items):
            raise StackConfigError(f"--set {shown!r}: index {index} is past the end of {full} "
                                   f"({len(items)} item(s); the next one is [{len(items)}])")
        items[index:index + 1] = [value]
        config.values[full] = json.dumps(items)
    else:
        full = config.full_key(key)
        config.values[full] = value
        config.yaml_numbers.pop(full, None)
    config.secrets.discard(full)
    config.origins[full] = f"--set {shown}"
    return full


def foreign_keys(keys, project: str) -> list[str]:
    """Keys in a namespace neither the program nor its providers read (e.g. `cloudstack:hostCount`)."""
    allowed = (project, *PROVIDER_NAMESPACES)
    return sorted(k for k in keys if ":" not in k or k.split(":", 1)[0] not in allowed)


def foreign_key_message(key: str, project: str, known_keys) -> str:
    namespace, _, name = key.partition(":")
    if name in known_keys:
        return f"namespace {namespace!r} is not read by this program: did you mean {project}:{name}?"
    close = nearest(namespace, (project, *PROVIDER_NAMESPACES))
    if close:
        return f"namespace {namespace!r} is not read by this program: did you mean {close}:{name}?"
    return (f"namespace {namespace!r} is not read by this program (only {project}:<key> and the "
            f"providers' {', '.join(PROVIDER_NAMESPACES)})")


def _compose(path: Path):
    try:
        return yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise StackConfigError(f"{path}: not valid YAML: {exc}") from None


def _refuse_duplicate_keys(stack_file: Path, node, path: str = "") -> None:
    """Refuse a key written twice in one mapping (at any depth): YAML 1.2 says mapping keys
    are unique (yaml.org/spec/1.2.2, 3.2.1.1), but PyYAML's SafeLoader keeps the last value
    without a word, so one of the two settings would be lost unseen.

    Raises StackConfigError naming the key and both line numbers."""
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(stack_file, item, f"{path}[{index}]")
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        name = f"{path}.{key_node.value}" if path else str(key_node.value)
        line = key_node.start_mark.line + 1
        if isinstance(key_node, yaml.ScalarNode) and key_node.value in seen:
            raise StackConfigError(f"{stack_file}: {name} is written twice, on lines {seen[key_node.value]} and "
                                   f"{line}: one of the two values would be lost; keep one")
        seen[key_node.value] = line
        _refuse_duplicate_keys(stack_file, value_node, "" if name == "config" and not path else name)


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise StackConfigError(f"{path}: not valid YAML: {exc}") from None


def _construct(node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _is_null(node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _has_secure(value: Any) -> bool:
    if isinstance(value, dict):
        if set(value) == {"secure"} and isinstance(value["secure"], str):
            return True
        return any(_has_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secure(v) for v in value)
    return False
