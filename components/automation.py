"""The Automation API entry point for platforms that embed the program, at its documented
import path (``from components.automation import open_stack``); it lives in
``components.cli.automation``."""

from components.cli.automation import (  # noqa: F401
    PulumiCliMissing, open_stack, project_root)
