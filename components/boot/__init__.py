"""The boot scripts each instance runs: user data and the stage-2 role scripts, rendered
from the files in the top-level ``userdata/`` folder.

Pure: imports ``components.model`` and the standard library, never Pulumi. Tested by
rendering and by running the scripts against recording fakes (tests/userdata).
"""
