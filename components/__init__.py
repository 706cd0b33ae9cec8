"""CloudStack on EC2, in layers; each package says what belongs in it and what it may import.

- ``model``: the cloud as data: settings and their rules, the IP plan, instance types,
  prices, names, regions, quotas, AWS's input rules, what was deployed. Pure: no Pulumi.
- ``boot``: the boot scripts each instance runs, rendered from ``userdata/``. Pure.
- ``resources``: the ComponentResources, what is declared on AWS. Pulumi, thin.
- ``registration``: the Pulumi dynamic provider that registers the zone, pod, clusters,
  hosts and storage through the CloudStack API.
- ``program``: the Pulumi program: settings read, then each tier declared in turn.
- ``cli``: the command line (``cloudstack-ec2``), the offline runner under Pulumi mocks and
  the Automation API.

A package imports only packages below it in this order: ``cli`` → ``program`` →
``resources`` / ``registration`` → ``boot`` → ``model``.
"""
