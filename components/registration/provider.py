"""Pulumi dynamic provider: one provider class, one resource class per CloudStack object kind.

Pulumi pickles the provider (dill) into the state and runs it in its provider
host: the class is importable at module level and instances carry only the
kind's name, never a client, a key or a lock.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi.dynamic as dyn

from .client import RegistrationError, connect, probe, tearing_down
from .operations import KINDS

_PROVIDER_KEY = "__provider"


def _clean(props: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k != _PROVIDER_KEY}


class CloudStackObjectProvider(dyn.ResourceProvider):
    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown CloudStack object kind {kind!r}; known: {', '.join(KINDS)}")
        self.kind = kind

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        failures = [dyn.CheckFailure(k, f"{k} is required") for k in ("endpoint", "secret_id", "region")
                    if k in news and news[k] == ""]
        return dyn.CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        props = _clean(props)
        id_, outs = KINDS[self.kind].create(connect(props), props)
        return dyn.CreateResult(id_, outs)

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        props = _clean(props)
        outs = KINDS[self.kind].read(connect(props), id_, props)
        if outs is None:  # deleted outside Pulumi: a refresh drops it from the state
            return dyn.ReadResult(None, {})
        # The inputs as CloudStack has them now, so that a preview after a refresh shows
        # which property drifted (not only the outputs).
        inputs = {k: outs[k] for k in props if k in outs and k not in KINDS[self.kind].output_keys}
        return dyn.ReadResult(id_, outs, inputs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        olds = _clean(olds)
        kind = KINDS[self.kind]
        if kind.probes and olds.get("service", "ok") == "ok":
            # Every `pulumi up` looks (without waiting) whether the cluster's hosts still serve:
            # a host left in maintenance or Disabled shows as a change, and the update returns it.
            api = probe(olds)
            if api is not None:
                try:
                    if not kind.probe_service(api, olds):
                        olds = {**olds, "service": "needs attention"}
                except RegistrationError:
                    pass
        changed, replaces = kind.diff(olds, _clean(news))
        # Delete first on replacement: names are unique in CloudStack, and a create
        # would otherwise adopt the very object about to be deleted.
        return dyn.DiffResult(changes=bool(changed), replaces=replaces, stables=[],
                              delete_before_replace=bool(replaces))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        news = _clean(news)
        return dyn.UpdateResult(KINDS[self.kind].update(lambda: connect(news), id_, _clean(olds), news))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        props = _clean(props)
        kind = KINDS[self.kind]
        if kind.connects_lazily:
            kind.delete_lazily(lambda: connect(props), id_, props)
        elif tearing_down(props):   # destroyWithRunningVms: CloudStack goes away with the stack
            kind.tear_down(props)   # only what lives outside CloudStack
        else:
            kind.delete(connect(props), id_, props)


def _resource_class(kind: str) -> type[dyn.Resource]:
    class_name = "".join(p.capitalize() for p in kind.split("_"))

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        dyn.Resource.__init__(self, CloudStackObjectProvider(kind), name, props, opts)

    cls = type(class_name, (dyn.Resource,), {"__init__": __init__, "__module__": __name__},
               module="cloudstack", name=class_name)
    return cls


#: kind → dynamic resource class (type tokens pulumi-python:dynamic/cloudstack:<Kind>).
RESOURCE_CLASSES: dict[str, type[dyn.Resource]] = {k: _resource_class(k) for k in KINDS}
