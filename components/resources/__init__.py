"""The ComponentResources: what the program declares on AWS (Underlay, MulticastDomain,
OverlayRouter, ManagementServer, KvmHostPool, RdsCloudDb, EfsStorage and the boot-script
bucket), each with a typed args class and its children parented to it.

Imports Pulumi, ``components.model`` and ``components.boot``; holds no rule of its own
that a pure module could hold. Tested under Pulumi mocks (tests/unit).
"""
