"""EC2's on-demand vCPU quotas: which quota an instance type counts against.

Pure module. EC2 limits running on-demand instances per account and region by the sum
of their vCPUs, in one quota per instance family group (Service Quotas, service code
`ec2`; AWS EC2 User Guide, "Amazon EC2 service quotas" / "On-Demand Instance quotas").
A new account's Standard quota is often far below what metal hosts need; its
Service Quotas code is L-1216C47A.
"""

from __future__ import annotations

import re
from typing import Optional

#: (quota name, family prefixes counted against it)
ON_DEMAND_QUOTAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", ("a", "c", "d", "h", "i", "m", "r", "t", "z")),
    ("Running On-Demand F instances", ("f",)),
    ("Running On-Demand G and VT instances", ("g", "vt")),
    ("Running On-Demand P instances", ("p",)),
    ("Running On-Demand X instances", ("x",)),
    ("Running On-Demand Inf instances", ("inf",)),
    ("Running On-Demand DL instances", ("dl",)),
    ("Running On-Demand Trn instances", ("trn",)),
    ("Running On-Demand High Memory instances", ("u",)),
    ("Running On-Demand HPC instances", ("hpc",)),
)

#: Families whose letters start like a Standard group but are not in it (mac: Dedicated Hosts only).
_NOT_STANDARD = ("inf", "trn", "hpc", "dl", "vt", "mac")


def quota_of(instance_type: str) -> Optional[str]:
    """The quota the type's vCPUs count against; None when unknown.

    The family is the type's leading letters: c5n.large -> "c", inf2.xlarge -> "inf",
    u-6tb1.metal -> "u", vt1.3xlarge -> "vt"."""
    match = re.match(r"^([a-z]+)", instance_type)
    if not match:
        return None
    letters = match.group(1)
    # Longest prefix first: "inf" before "i", "trn" before "t", "hpc" before "h", "vt"/"dl" first.
    best: Optional[str] = None
    best_len = 0
    for name, prefixes in ON_DEMAND_QUOTAS:
        for prefix in prefixes:
            exact_family = letters == prefix
            # A multi-letter family (m5zn, c7gn, r6idn) starts with its one-letter group.
            one_letter_group = len(prefix) == 1 and letters.startswith(prefix) and letters not in _NOT_STANDARD
            if (exact_family or one_letter_group) and len(prefix) > best_len:
                best, best_len = name, len(prefix)
    return best
