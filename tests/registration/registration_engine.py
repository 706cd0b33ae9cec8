"""A tiny stand-in for the Pulumi engine: walks the registration plan like `pulumi up`
(create / diff → update or delete-then-create / delete what left the program, dependents
first) with the real dynamic provider, keeping a state dict between runs."""

from __future__ import annotations

from typing import Any

from components.registration.plan import plan_registration, resolve
from components.registration.provider import CloudStackObjectProvider
from components.registration.spec import RegistrationSpec


class Crash(Exception):
    """The `pulumi up` process died after the API call, before the state was saved."""


class Engine:
    def __init__(self, endpoint: str, secret_id: str, region: str, efs_dns: str = "fs-1.efs.eu-west-1.amazonaws.com"):
        self.deferred = {"endpoint": endpoint, "secret_id": secret_id, "region": region, "efs_dns": efs_dns}
        self.state: dict[str, dict[str, Any]] = {}   # name → kind, id, outs (creation order)
        self.log: list[tuple[str, str]] = []          # (operation, name)

    def up(self, spec: RegistrationSpec, crash_after: str | None = None) -> None:
        plan = plan_registration(spec)
        wanted = {p.name for p in plan}
        for p in plan:
            outs = {n: {**s["outs"], "id": s["id"]} for n, s in self.state.items()}
            props = {k: resolve(v, outs, self.deferred) for k, v in p.props.items()}
            prov = CloudStackObjectProvider(p.kind)
            old = self.state.get(p.name)
            if old is None:
                r = prov.create(props)
                self.log.append(("create", p.name))
                if crash_after == p.name:
                    raise Crash(p.name)
                self.state[p.name] = {"kind": p.kind, "id": r.id, "outs": r.outs}
                continue
            d = prov.diff(old["id"], old["outs"], props)
            if d.replaces:
                prov.delete(old["id"], old["outs"])
                del self.state[p.name]
                r = prov.create(props)
                self.log.append(("replace", p.name))
                self.state[p.name] = {"kind": p.kind, "id": r.id, "outs": r.outs}
            elif d.changes:
                r = prov.update(old["id"], old["outs"], props)
                self.log.append(("update", p.name))
                self.state[p.name] = {"kind": p.kind, "id": old["id"], "outs": r.outs}
        for name in reversed(list(self.state)):
            if name not in wanted:
                s = self.state[name]
                CloudStackObjectProvider(s["kind"]).delete(s["id"], s["outs"])
                self.log.append(("delete", name))
                del self.state[name]

    def destroy(self) -> None:
        """Like `pulumi destroy`: everything, dependents first."""
        for name in reversed(list(self.state)):
            s = self.state[name]
            CloudStackObjectProvider(s["kind"]).delete(s["id"], s["outs"])
            self.log.append(("delete", name))
            del self.state[name]

    def refresh(self) -> dict[str, str]:
        """Like `pulumi refresh`: read every resource; returns name → 'gone' | 'drift' | 'same'."""
        report = {}
        for name in list(self.state):
            s = self.state[name]
            r = CloudStackObjectProvider(s["kind"]).read(s["id"], s["outs"])
            if not r.id:
                report[name] = "gone"
                del self.state[name]
                continue
            report[name] = "same" if r.outs == s["outs"] else "drift"
            s["outs"] = r.outs
        return report
