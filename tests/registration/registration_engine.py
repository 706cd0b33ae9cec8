"""A tiny stand-in for the Pulumi engine: walks the registration plan like `pulumi up`
(create / diff → update or delete-then-create / delete what left the program, dependents
first) with the real dynamic provider, keeping a state dict between runs.

With `workers=N` it runs like Pulumi does: every resource whose dependencies are done
starts at once, but at most N provider calls run at the same time, which is what the
Python dynamic provider host allows (`pulumi/dynamic/__main__.py`:
`ThreadPoolExecutor(max_workers=4)`, shared by all dynamic resources)."""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

from components.registration.plan import plan_registration, resolve, with_console_parameter
from components.registration.provider import CloudStackObjectProvider
from components.registration.spec import RegistrationSpec


class Crash(Exception):
    """The `pulumi up` process died after the API call, before the state was saved."""


class Engine:

    def __init__(self, endpoint: str, secret_id: str, region: str, efs_dns: str = "fs-1.efs.eu-west-1.amazonaws.com",
                 workers: int | None = None):
        self.deferred = {"endpoint": endpoint, "secret_id": secret_id, "region": region, "efs_dns": efs_dns}
        self.state: dict[str, dict[str, Any]] = {}   # name → kind, id, outs (creation order)
        self.log: list[tuple[str, str]] = []          # (operation, name)
        self.workers = workers
        self._lock = threading.Lock()

    def _step(self, p: Any, crash_after: str | None) -> None:
        with self._lock:
            outs = {n: {**s["outs"], "id": s["id"]} for n, s in self.state.items()}
            old = self.state.get(p.name)
        props = {k: resolve(v, outs, self.deferred) for k, v in p.props.items()}
        prov = CloudStackObjectProvider(p.kind)
        if old is None:
            r = prov.create(props)
            with self._lock:
                self.log.append(("create", p.name))
            if crash_after == p.name:
                raise Crash(p.name)
            with self._lock:
                self.state[p.name] = {"kind": p.kind, "id": r.id, "outs": r.outs}
            return
        d = prov.diff(old["id"], old["outs"], props)
        if d.replaces:
            prov.delete(old["id"], old["outs"])
            with self._lock:
                del self.state[p.name]
            r = prov.create(props)
            with self._lock:
                self.log.append(("replace", p.name))
                self.state[p.name] = {"kind": p.kind, "id": r.id, "outs": r.outs}
        elif d.changes:
            r = prov.update(old["id"], old["outs"], props)
            with self._lock:
                self.log.append(("update", p.name))
                self.state[p.name] = {"kind": p.kind, "id": old["id"], "outs": r.outs}

    def up(self, spec: RegistrationSpec, crash_after: str | None = None) -> None:
        plan = plan_registration(with_console_parameter(spec, self.deferred.get("console_forwards_parameter", "")))
        wanted = {p.name for p in plan}
        if self.workers is None:
            for p in plan:
                self._step(p, crash_after)
        else:
            pending = {p.name: p for p in plan}
            done: set[str] = set()
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                running: dict[Any, str] = {}
                while pending or running:
                    for name, p in list(pending.items()):
                        if p.refs() <= done:
                            running[pool.submit(self._step, p, crash_after)] = name
                            del pending[name]
                    finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for f in finished:
                        f.result()
                        done.add(running.pop(f))
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
