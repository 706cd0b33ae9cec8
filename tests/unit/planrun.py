"""The `cloudstack-ec2` command run in this process (the console script costs an
interpreter start per call; tests of the command's own start-up use the script)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.cli.commands import main

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def cli(capsys, *args: str) -> Result:
    """Run `cloudstack-ec2 ARGS` (with --dir ROOT unless given); capsys captures its output."""
    args = list(args)
    if args and args[0] == "plan" and "--dir" not in args:
        args += ["--dir", str(ROOT)]
    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)
