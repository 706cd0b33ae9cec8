"""The command line (``cloudstack-ec2``: plan, preview, up, admin-access, ...), the offline
runner that runs the real program under Pulumi mocks with AWS's input rules, and the
Automation API entry point for platforms that embed the program.

May import every other package; nothing imports it. ``main`` is the console script's
entry point (``cloudstack-ec2``).
"""

from components.cli.commands import main  # noqa: F401
