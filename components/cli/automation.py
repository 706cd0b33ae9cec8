"""Stacks driven through Pulumi's Automation API: `cloudstack-ec2 preview|up|refresh|destroy|outputs`.

The same program as `pulumi up` (components.program.pulumi_program, run in process),
with the same conventions as `scripts/deploy`:

* work_dir is the project directory, so `Pulumi.yaml` and `Pulumi.<stack>.yaml` are the
  project and the stack's config, exactly as for the CLI;
* state: `PULUMI_BACKEND_URL` if set, else the backend you are logged in to, else the
  local file backend `<project>/.pulumi-state`;
* secrets: `PULUMI_CONFIG_PASSPHRASE` / `PULUMI_CONFIG_PASSPHRASE_FILE` if set, else the
  passphrase file `$XDG_CONFIG_HOME/cloudstack-ec2/passphrase` (`~/.config/...` without
  XDG_CONFIG_HOME; created, mode 0600), outside the project directory so that a copy of the
  directory is not a copy of what decrypts its state; `<project>/.pulumi-state/passphrase`
  when an earlier version created it there (its stacks need it);
* the dynamic provider (the CloudStack registration) runs in a separate process that the
  Pulumi engine starts (`pulumi-resource-pulumi-python`, which runs
  `$PULUMI_RUNTIME_VIRTUALENV/bin/python` or `$PULUMI_PYTHON_CMD -m pulumi.dynamic`) and
  that unpickles the provider by importing `components.registration.provider`: so the
  workspace passes this interpreter (and its virtualenv) and puts the project directory
  on PYTHONPATH.

The Automation API drives the Pulumi CLI: without it, `open_stack` raises
PulumiCliMissing, whose message says how to install it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping, Optional, TextIO

from components.model.settings import NAMESPACE
from components.model.stackconfig import StackConfigError, read_stack

INSTALL_HINT = ("install it (https://www.pulumi.com/docs/install/: curl -fsSL https://get.pulumi.com | sh), "
                "then run this again; `cloudstack-ec2 plan` shows the stack offline without it")
COMMANDS = ("preview", "up", "refresh", "destroy", "outputs")
#: Commands that change the cloud: asked for explicitly (the Automation API never prompts).
CHANGING = ("up", "destroy")


class PulumiCliMissing(RuntimeError):
    """The Pulumi CLI, which the Automation API runs, is not on PATH."""


def project_root() -> Path:
    """The checkout this module belongs to (Pulumi.yaml's directory)."""
    return Path(__file__).resolve().parents[2]


def workspace_env(project_dir: Path, environ: Mapping[str, str] = os.environ,
                  logged_in: Optional[Callable[[], bool]] = None) -> dict[str, str]:
    """The environment the workspace (the Pulumi CLI and the plugins it starts) needs.

    Same backend and passphrase rules as scripts/deploy; creates the passphrase file when
    it is missing. `logged_in()` says whether `pulumi whoami` succeeds (asked only when
    PULUMI_BACKEND_URL is unset)."""
    project_dir = project_dir.resolve()
    env: dict[str, str] = {}
    state = project_dir / ".pulumi-state"
    if not environ.get("PULUMI_BACKEND_URL") and not (logged_in or _logged_in)():
        state.mkdir(exist_ok=True)
        env["PULUMI_BACKEND_URL"] = f"file://{state}"
    if not environ.get("PULUMI_CONFIG_PASSPHRASE") and not environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        passphrase = state / "passphrase"
        if not passphrase.exists():
            passphrase = passphrase_path(environ)
        if not passphrase.exists():
            passphrase.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(passphrase, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
        env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(passphrase)
    # The dynamic provider's host process must import this project and its dependencies.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project_dir), environ.get("PYTHONPATH", "")) if p)
    env["PULUMI_PYTHON_CMD"] = sys.executable
    if sys.prefix != sys.base_prefix:  # running in a virtualenv: the provider's host uses it first
        env["PULUMI_RUNTIME_VIRTUALENV"] = sys.prefix
    return env


def passphrase_path(environ: Mapping[str, str]) -> Path:
    """`$XDG_CONFIG_HOME/cloudstack-ec2/passphrase`, else `$HOME/.config/...` (XDG Base
    Directory Specification: XDG_CONFIG_HOME defaults to $HOME/.config), as scripts/deploy.
    Raises RuntimeError when neither variable is set."""
    base = environ.get("XDG_CONFIG_HOME") or (f"{environ['HOME']}/.config" if environ.get("HOME") else "")
    if not base:
        raise RuntimeError("neither XDG_CONFIG_HOME nor HOME is set: set PULUMI_CONFIG_PASSPHRASE_FILE to the "
                           "stack's passphrase file")
    return Path(base) / "cloudstack-ec2" / "passphrase"


def _logged_in() -> bool:
    try:
        return subprocess.run(["pulumi", "whoami"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def open_stack(stack_name: str, project_dir: Optional[Path] = None, environ: Mapping[str, str] = os.environ):
    """Create or select `stack_name` of the project at `project_dir` (default: this checkout)
    with the program in process. Raises StackConfigError when `Pulumi.<stack>.yaml` is missing
    or unreadable (before anything else: a typo in the name must not create a stack),
    PulumiCliMissing without the Pulumi CLI."""
    read_stack((project_dir or project_root()).resolve(), stack_name)
    if shutil.which("pulumi", path=environ.get("PATH")) is None:
        raise PulumiCliMissing(f"the Pulumi CLI is not installed (the Automation API runs it): {INSTALL_HINT}")
    from pulumi import automation as auto

    from components.program import pulumi_program

    project_dir = (project_dir or project_root()).resolve()
    options = auto.LocalWorkspaceOptions(work_dir=str(project_dir), env_vars=workspace_env(project_dir, environ),
                                         secrets_provider="passphrase")
    try:
        return auto.create_or_select_stack(stack_name=stack_name, project_name=NAMESPACE, program=pulumi_program,
                                           opts=options)
    except FileNotFoundError as exc:  # the CLI vanished between the check and the run
        raise PulumiCliMissing(f"the Pulumi CLI could not be run ({exc}): {INSTALL_HINT}") from None


def run_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """One Automation API operation on a stack; progress streamed to `out`."""
    name = f"cloudstack-ec2 {args.command}"
    try:
        # The stack's own file first: naming a stack that does not exist is the likelier
        # mistake, and the answer (the stacks that do) needs no Pulumi CLI.
        read_stack(Path(args.dir), args.stack)
    except StackConfigError as exc:
        err.write(f"{name}: {exc}\n")
        return 2
    if args.command in CHANGING and not args.yes:
        err.write(f"{name}: changes the cloud of stack {args.stack!r}: add --yes to go ahead "
                  f"(`cloudstack-ec2 preview --stack {args.stack}` shows what would change)\n")
        return 2
    try:
        stack = open_stack(args.stack, Path(args.dir))
        if args.command == "outputs":
            values = {k: ("[secret]" if v.secret else v.value) for k, v in stack.outputs().items()}
            json.dump(values, out, indent=2, default=str)
            out.write("\n")
            return 0

        def stream(line: str) -> None:
            out.write(line if line.endswith("\n") else line + "\n")
            out.flush()

        operation = getattr(stack, args.command)
        operation(on_output=stream)
        return 0
    except PulumiCliMissing as exc:
        err.write(f"{name}: {exc}\n")
        return 1
    except Exception as exc:  # noqa: BLE001 - the Automation API's errors carry the CLI's own message
        from pulumi.automation import errors

        if isinstance(exc, errors.CommandError):
            lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
            last = lines[-1].removeprefix("stderr:").strip() if lines else "no message"
            err.write(f"{name}: pulumi failed: {last}\n")
            return 1
        raise


def add_commands(sub) -> None:
    """Register preview/up/refresh/destroy/outputs on the CLI's subcommand parser."""
    helps = {"preview": "show what `up` would change (Automation API; needs the Pulumi CLI)",
             "up": "create or update the stack's cloud (needs --yes)",
             "refresh": "read the real state of the stack's resources into its state",
             "destroy": "delete the stack's resources (needs --yes; lift deletionProtection first)",
             "outputs": "print the stack's outputs as JSON (secrets masked)"}
    for command in COMMANDS:
        p = sub.add_parser(command, help=helps[command])
        p.add_argument("--stack", default="dev", help="stack name (default: dev)")
        p.add_argument("--dir", default=str(project_root()), help="project directory (default: this checkout)")
        if command in CHANGING:
            p.add_argument("--yes", action="store_true", help="go ahead without asking")
        p.set_defaults(handler=run_command)
