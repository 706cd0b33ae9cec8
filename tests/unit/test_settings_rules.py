"""The settings' rules as one table: every key has its own rule, the cross-key rules are
named and explained, and the boot scripts reuse the rules of values that come from settings."""

from components.model import rules
from components.model import settings
from components import boot
from components.boot import checks, management, overlay
from components.model.settings import CROSS_KEY_RULES, KEYS, parse_settings

BASE = {"adminCidrs": ["203.0.113.7/32"]}


def test_every_key_has_a_rule():
    unruled = [k.name for k in KEYS if not callable(k.rule)]
    assert unruled == [], f"keys without a rule (silently unvalidated): {unruled}"


def test_keys_left_to_cross_key_rules_name_one_that_exists():
    names = {r.__name__ for r in CROSS_KEY_RULES}
    deferred = {k.name: k.rule.rule for k in KEYS if isinstance(k.rule, rules.CrossKey)}
    assert deferred, "vmForwards and efsProvisionedMibps are judged with other keys"
    assert {k: r for k, r in deferred.items() if r not in names} == {}


def test_every_cross_key_rule_says_why():
    assert [r.__name__ for r in CROSS_KEY_RULES if not (r.__doc__ or "").strip()] == []


def test_boot_scripts_reuse_the_settings_rules():
    assert management._ZONE is settings._NAME is rules.ZONE_NAME
    assert checks._VERSION is settings._VERSION is rules.VERSION
    assert boot.OS_CODENAMES == tuple(settings.UBUNTU_RELEASES.values())
    # The DNAT form a forward renders is the form the router's check accepts.
    s = parse_settings({**BASE, "vmForwards": ["tcp:2222:10.100.128.5:22@anywhere"]})
    assert overlay._DNAT.match(s.vm_forwards[0].dnat)
