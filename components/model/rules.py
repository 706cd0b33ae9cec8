"""The rules of one setting's own value, shared by the settings and the boot scripts.

Pure module (no Pulumi, no import of components.model.settings or components.boot:
both import this one). Each rule is a small callable
`rule(check, value) -> converted value` that reports what it refuses through
`check.problem(message, value=...)` (the key is the check's) and may add
`check.warn(text)`; it never raises, so every problem is collected in one round.
components/model/settings/ names one rule per key in `KEYS`; components/boot/
reuses the patterns and limits below for the values that come from settings.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence

# ----------------------------------------------------------- shared limits ----

#: Transit Gateway carries at most 8500-byte packets and VXLAN adds 50 bytes.
TGW_MAX_MTU = 8500
VXLAN_OVERHEAD = 50
MAX_OVERLAY_MTU = TGW_MAX_MTU - VXLAN_OVERHEAD
#: IPv6's minimum link MTU (RFC 8200 section 5).
MIN_OVERLAY_MTU = 1280
#: A VXLAN network identifier is 24 bits (RFC 7348 section 5); 0 is refused by us.
MAX_VXLAN_ID = 2**24 - 1

#: Instance metadata and EC2's link-local services: never reachable from the overlay.
LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")
#: Ubuntu LTS releases of the instances and their codenames (the package repositories').
UBUNTU_RELEASES = {"22.04": "jammy", "24.04": "noble"}

# --------------------------------------------------------- shared patterns ----

#: CloudStack zone name, also a directory on EFS (/<zone>/primary).
ZONE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
ZONE_NAME_ACCEPTED = "1-32 letters, digits, '-' or '_', starting with a letter or digit"
#: A CloudStack version: X.Y (the newest patch of that release) or X.Y.Z.
VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")
#: The router's DNAT form of a VM forward (overlay-network.sh VM_FORWARDS / ROUTER_DNAT):
#: proto:port:target:targetPort; the setting `vmForwards` adds `@sources`.
DNAT = r"(tcp|udp):(\d{1,5}):([0-9.]+):(\d{1,5})"


# -------------------------------------------------------------- rule kinds ----

class Check(Protocol):
    """What a rule reports to (components/model/settings/'s collector for one key)."""

    key: str

    def problem(self, message: str, value: Any = ...) -> None: ...
    def warn(self, text: str) -> None: ...
    def has_problem(self) -> bool: ...


Rule = Callable[[Check, Any], Any]


@dataclass(frozen=True)
class Plain:
    """The key's kind (true/false, an integer, a string) is its whole rule; `why` says
    why nothing more is checked here."""

    why: str

    def __call__(self, c: Check, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class Range:
    """An integer in low..high."""

    low: int
    high: int
    why: str = ""

    def __call__(self, c: Check, value: int) -> int:
        if not self.low <= value <= self.high:
            c.problem(f"must be between {self.low} and {self.high}{self.why}")
        return value


@dataclass(frozen=True)
class Choice:
    """One of `options`."""

    options: Sequence[Any]
    message: str = ""  # default: "must be one of a, b"

    def __call__(self, c: Check, value: Any) -> Any:
        if value not in self.options:
            c.problem(self.message or f"must be one of {', '.join(map(str, self.options))}")
        return value


@dataclass(frozen=True)
class Pattern:
    """Text matching `regex`; `accepted` says what that is. Optional: empty is fine."""

    regex: re.Pattern
    accepted: str
    optional: bool = False

    def __call__(self, c: Check, value: str) -> str:
        if (value or not self.optional) and not self.regex.match(value):
            c.problem(f"expected {self.accepted}")
        return value


@dataclass(frozen=True)
class EachPattern:
    """A list whose every item matches `regex` (a `what` id)."""

    regex: re.Pattern
    what: str

    def __call__(self, c: Check, value: list) -> list:
        for item in value:
            if not self.regex.match(item):
                c.problem(f"{item!r} is not a {self.what} id", value)
        return value


@dataclass(frozen=True)
class Cidr:
    """An IPv4 CIDR (host bits zero) -> IPv4Network, None when unparseable. `example` is
    shown in the message. With `prefixes`, a prefix outside low..high is refused with
    `prefix_message` (and the value becomes None when `unusable_outside`)."""

    example: str
    prefixes: Optional[tuple[int, int]] = None
    prefix_message: str = ""
    unusable_outside: bool = False

    def __call__(self, c: Check, value: str) -> Optional[ipaddress.IPv4Network]:
        try:
            net = ipaddress.IPv4Network(value)
        except ValueError as exc:
            c.problem(f"expected an IPv4 CIDR such as {self.example} ({exc})")
            return None
        if self.prefixes and not self.prefixes[0] <= net.prefixlen <= self.prefixes[1]:
            c.problem(self.prefix_message, str(net))
            if self.unusable_outside:
                return None
        return net


@dataclass(frozen=True)
class CrossKey:
    """The key's value is checked only together with other keys, by the named rule of
    components/model/settings/'s CROSS_KEY_RULES (`why` says why)."""

    rule: str
    why: str

    def __call__(self, c: Check, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class AtLeast:
    """An integer of at least `low`."""

    low: int

    def __call__(self, c: Check, value: int) -> int:
        if value < self.low:
            c.problem(f"must be at least {self.low}")
        return value
