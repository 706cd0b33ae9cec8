"""`pulumi install && pulumi preview` from a fresh clone: Pulumi.yaml's pip toolchain
installs requirements.txt into the stack's virtualenv, which must then import the program.

What runs for real: a fresh virtualenv (no system packages) gets `pip install -r
requirements.txt`, which must install THIS project. To keep the suite fast the
project's third-party dependencies are not downloaded again (`--no-deps`); instead the
test proves they are exactly covered: every third-party module the program imports is
provided by a distribution the installed project declares (its metadata, from
pyproject.toml), and the program then imports in the fresh virtualenv with those
distributions borrowed from the test virtualenv (PYTHONPATH, after its own).
A full install (`pip install -r requirements.txt` with dependencies) took about 50 s here.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import re
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "cloudstack-ec2"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _program_files() -> list[Path]:
    return [ROOT / "__main__.py", *sorted((ROOT / "components").rglob("*.py"))]


def _third_party_imports() -> set[str]:
    local = {"components", "userdata"}
    found: set[str] = set()
    for path in _program_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local and top != "__future__":
                    found.add(top)
    return found


def test_pulumi_yaml_installs_requirements_with_pip():
    runtime = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["runtime"]
    assert runtime["name"] == "python" and runtime["options"]["toolchain"] == "pip"
    assert (ROOT / "requirements.txt").is_file()


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("fresh") / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(where)
    python = where / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "-r", "requirements.txt"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return python


def _in(python: Path, code: str, **env) -> subprocess.CompletedProcess:
    # From a directory outside the clone: only the installed project can provide `components`.
    return subprocess.run([str(python), "-c", code], cwd="/", capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", **env})


def test_requirements_install_this_project(fresh_venv):
    listed = json.loads(subprocess.run([str(fresh_venv), "-m", "pip", "list", "--format", "json"],
                                       capture_output=True, text=True, check=True).stdout)
    assert PROJECT in {_normalize(p["name"]) for p in listed}
    found = _in(fresh_venv, "import importlib.util as u; print(u.find_spec('components.program').origin)")
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()) == ROOT / "components" / "program" / "__init__.py"


def test_declared_dependencies_cover_every_import_of_the_program(fresh_venv):
    declared = _in(fresh_venv, f"import importlib.metadata as m; print('\\n'.join(m.requires({PROJECT!r}) or []))")
    assert declared.returncode == 0, declared.stderr
    requires = {_normalize(re.split(r"[\s<>=!~;\[(]", line, maxsplit=1)[0])
                for line in declared.stdout.splitlines() if line and "extra ==" not in line}
    providers = metadata.packages_distributions()
    imports = _third_party_imports()
    assert {"pulumi", "pulumi_aws", "pulumi_random", "yaml"} <= imports  # the scan sees the program
    missing = {m: providers.get(m) for m in imports if not {_normalize(d) for d in providers.get(m, [])} & requires}
    assert not missing, f"imported but not declared in pyproject.toml's dependencies: {missing}"


def test_program_imports_in_the_fresh_virtualenv(fresh_venv):
    borrowed = sysconfig.get_paths()["purelib"]  # the declared dependencies, already installed here
    done = _in(fresh_venv, "import components.program, components.cli.commands; print('ok')", PYTHONPATH=borrowed)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


# --- the tested versions, pinned -----------------------------------------------------------

def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version and re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), f"not an exact pin: {line!r}"
            pins[_normalize(name)] = version
    return pins


def test_every_install_uses_the_constraints_file():
    assert "-c constraints.txt" in (ROOT / "requirements.txt").read_text().splitlines()
    for script, install in (("scripts/deploy", "-m pip install -q -c constraints.txt -e ."),
                            ("scripts/test", "-m pip install -q -c constraints.txt -e '.[test]'"),
                            (".github/workflows/preview.yml", "-m pip install -c constraints.txt -e .")):
        text = (ROOT / script).read_text()
        assert install in text, script
        # and no install of the project without them
        assert all("-c constraints.txt" in line for line in text.splitlines()
                   if "pip install" in line and " -e " in line), script


def test_constraints_pin_every_installed_distribution_at_the_version_tested():
    # Every distribution of this virtualenv (the one the suite runs in, installed with the
    # constraints) is pinned, at exactly the version installed.
    pins = _pins()
    installed = {_normalize(d.metadata["Name"]): d.version for d in metadata.distributions()}
    installed = {n: v for n, v in installed.items() if n not in {PROJECT, "pip", "setuptools", "wheel"}}
    assert {n: v for n, v in installed.items() if pins.get(n) != v} == {}
    assert set(pins) <= set(installed), set(pins) - set(installed)


def test_pulumi_aws_floor_has_every_argument_the_program_uses():
    # The program launches instances on their own network interface (node.hardened_instance)
    # and hosts with nested virtualization: both arguments must exist in the floor release.
    import pulumi_aws as aws

    text = (ROOT / "pyproject.toml").read_text()
    floor = re.search(r'"pulumi-aws>=([0-9.]+),', text).group(1)
    assert floor == "7.20"   # cpu_options.nested_virtualization first appears in 7.20.0
    assert tuple(map(int, _pins()["pulumi-aws"].split(".")[:2])) >= (7, 20)
    cpu = aws.ec2.InstanceCpuOptionsArgs(nested_virtualization="enabled")
    assert cpu.nested_virtualization == "enabled"
    nic = aws.ec2.InstancePrimaryNetworkInterfaceArgs(network_interface_id="eni-0123456789abcdef0")
    assert nic.network_interface_id == "eni-0123456789abcdef0"
