"""The cloud as data: settings and their rules, IP plan, instance types, prices, names,
regions, quotas, AWS's input rules and the record of what was deployed.

Pure: imports only the standard library, PyYAML and other ``components.model`` modules;
never Pulumi, boto3 or the boot scripts. Tested directly (tests/unit).
"""
