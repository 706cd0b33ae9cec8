"""Settings of operating the cloud: how long CloudWatch keeps the instances' logs, and who
the alarms notify.

Pure module (no Pulumi import).
"""

from __future__ import annotations

import re

from components.model.aws_constraints import LOG_RETENTION_DAYS
from components.model.rules import Choice, Pattern
from components.model.settings.base import Key

#: An address SNS's email protocol takes: one mailbox, no display name (SNS API reference,
#: Subscribe Endpoint: "For the email protocol, use an email address").
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")

KEYS: tuple[Key, ...] = (
    Key("logRetentionDays", "int", 30, "Days CloudWatch Logs keeps the instances' logs (management server, KVM hosts, router, Session Manager sessions): 1, 3, 5, 7, 14, 30, 60, 90, ... 3653, or 0 for never expire.",
        rule=Choice(LOG_RETENTION_DAYS, f"CloudWatch Logs accepts only {', '.join(map(str, LOG_RETENTION_DAYS))} (0: never expire)")),
    Key("alarmEmail", "str", "", "Email address subscribed to the alarms' SNS topic (SNS mails a confirmation link first); empty: the topic has no subscription.",
        rule=Pattern(_EMAIL, "one email address such as ops@example.com, or empty", optional=True)),
)
