"""CloudStack on EC2: read and validate the stack's settings, declare the components, export outputs."""

import pulumi

from components.program import build
from components.settings import SettingsError

try:
    deployment = build()
except SettingsError as error:
    # A clean, complete list of what to fix, before any resource is declared.
    raise pulumi.RunError(str(error)) from None

for name, value in deployment.outputs.items():
    pulumi.export(name, value)
