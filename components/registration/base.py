"""What every kind of CloudStack object shares: the lookup-before-create, the
converge/update/delete skeleton, and small helpers (no Pulumi here)."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from .client import LOG, Api, CallTimedOut, CloudStackError, RegistrationError
from .plan import CONNECTION_KEYS

Props = Mapping[str, Any]
Obj = dict[str, Any]


def _is_gone(e: CloudStackError) -> bool:
    return e.gone


def _first(v: Any) -> Any:
    # Newer releases answer some scalars (a pod's startip/endip) as one-element lists.
    if isinstance(v, list):
        return v[0] if v else None
    return v


def _single(resp: Any, key: str) -> Obj:
    v = resp.get(key) if isinstance(resp, dict) else None
    if isinstance(v, list):
        v = v[0] if v else None
    if not isinstance(v, dict) or "id" not in v:
        raise RegistrationError(f"unexpected CloudStack answer: no {key!r} object in {sorted(resp or {})}")
    return v


class Kind:
    """One kind of CloudStack object. Subclasses fill in the API specifics."""

    kind = ""
    #: CloudStack has the object already (settings, providers, the zone's state): found ≠ adopted.
    preexisting = False
    replace_keys: tuple[str, ...] = ()
    update_keys: tuple[str, ...] = ()
    #: outputs that are not inputs (never handed back as inputs by a refresh)
    output_keys: tuple[str, ...] = ("id",)
    #: the provider's diff asks CloudStack (without waiting) whether the object still serves
    probes = False
    #: delete_lazily(connect, id, props) instead of delete(api, id, props)
    connects_lazily = False

    # -- to implement ----------------------------------------------------
    def label(self, props: Props) -> str:
        return f"{self.kind} {props.get('name', '')}".strip()

    def find(self, api: Api, props: Props) -> Obj | None:
        raise NotImplementedError

    def make(self, api: Api, props: Props) -> Obj:
        raise NotImplementedError

    def get(self, api: Api, id_: str, props: Props) -> Obj | None:
        raise NotImplementedError

    def live(self, obj: Obj, props: Props) -> dict[str, Any]:
        """The inputs' keys as CloudStack reports them (drift shows against these)."""
        return {}

    def converge(self, api: Api, obj: Obj, props: Props) -> Obj:
        """Bring an existing (new or adopted) object to the wanted state; returns it fresh."""
        return obj

    def change(self, api: Api, id_: str, olds: Props, news: Props, changed: list[str]) -> None:
        raise RegistrationError(f"{self.kind}: {changed} cannot be updated in place")

    def remove(self, api: Api, id_: str, props: Props) -> None:
        raise NotImplementedError

    def tear_down(self, props: Props) -> None:
        """The cloud is destroyed with its workloads: clean up what lives outside CloudStack."""

    # -- generic ---------------------------------------------------------
    def outs(self, obj: Obj, props: Props) -> dict[str, Any]:
        return {**dict(props), **self.live(obj, props), "id": str(obj["id"])}

    def create(self, api: Api, props: Props) -> tuple[str, dict[str, Any]]:
        label = self.label(props)

        def step() -> Obj:
            found = self.find(api, props)
            if found is not None:
                if not self.preexisting:
                    LOG.info("%s exists already (id %s): adopting it", label, found["id"])
                return found
            try:
                made = self.make(api, props)
            except CallTimedOut as e:
                made = await_created(api, label, e, lambda: self.find(api, props))
            LOG.info("created %s (id %s)", label, made["id"])
            return made

        obj = api.retrying(f"create {label}", step)
        obj = api.retrying(f"configure {label}", lambda: self.converge(api, obj, props))
        return str(obj["id"]), self.outs(obj, props)

    def read(self, api: Api, id_: str, props: Props) -> dict[str, Any] | None:
        obj = api.retrying(f"read {self.label(props)}", lambda: self.get(api, id_, props))
        return None if obj is None else self.outs(obj, props)

    def diff(self, olds: Props, news: Props) -> tuple[list[str], list[str]]:
        """(changed keys, keys forcing replacement). A changed connection key (a new
        endpoint, say) is an update that touches nothing in CloudStack: it only stores
        the new value, so later reads and deletes use it."""
        changed = [k for k in (*self.replace_keys, *self.update_keys)
                   if k not in CONNECTION_KEYS and olds.get(k) != news.get(k)]
        changed += [k for k in CONNECTION_KEYS if olds.get(k) != news.get(k)]
        return changed, [k for k in changed if k in self.replace_keys]

    def update(self, connect: Callable[[], Api], id_: str, olds: Props, news: Props) -> dict[str, Any]:
        """`connect` gives the Api; it is called only when CloudStack must be asked."""
        changed, replaces = self.diff(olds, news)
        if replaces:
            raise RegistrationError(f"{self.label(news)}: {replaces} need a replacement, not an update")
        label = self.label(news)
        changed = [k for k in changed if k not in CONNECTION_KEYS]
        if not changed and not self.probes:
            # Only how to reach CloudStack changed: store it, ask CloudStack nothing
            # (the API need not even be reachable for this).
            return {**olds, **{k: news[k] for k in CONNECTION_KEYS if k in news}}
        # (A probing kind converges even then: its diff may have seen drift that the saved
        # state, `olds`, does not show.)
        api = connect()
        if changed:
            api.retrying(f"update {label}", lambda: self.change(api, id_, olds, news, changed))
            LOG.info("updated %s: %s", label, ", ".join(changed))
        obj = api.retrying(f"read {label}", lambda: self.get(api, id_, news))
        if obj is None:
            raise RegistrationError(f"{label} (id {id_}) disappeared during the update; run `pulumi refresh`")
        obj = api.retrying(f"configure {label}", lambda: self.converge(api, obj, news))
        return self.outs(obj, news)

    def delete(self, api: Api, id_: str, props: Props) -> None:
        label = self.label(props)

        def step() -> None:
            if self.get(api, id_, props) is None:
                LOG.info("%s (id %s) is gone already", label, id_)
                return
            try:
                self.remove(api, id_, props)
            except CloudStackError as e:
                if not _is_gone(e):
                    raise
            LOG.info("deleted %s (id %s)", label, id_)

        api.retrying(f"delete {label}", step)


def await_created(api: Api, label: str, timed_out: CallTimedOut, find: Callable[[], Obj | None],
                  bound: float | None = None) -> Obj:
    """After a create got no answer in time: the server may still be working on it (addHost
    waits for the agent, addImageStore copies the template). Look the object up until it
    appears, bounded by the command's own timeout; never send the create a second time."""
    bound = api.timeouts.http_timeout_for(timed_out.command) if bound is None else bound
    LOG.warning("%s: %s; looking for it for up to %gs before anything else", label, timed_out, bound)
    deadline = time.monotonic() + bound
    while True:
        found = api.retrying(f"look up {label}", find)
        if found is not None:
            LOG.info("%s appeared (id %s) after the %s call timed out", label, found["id"], timed_out.command)
            return found
        if time.monotonic() > deadline:
            raise RegistrationError(
                f"{label}: {timed_out}, and it has not appeared in CloudStack within a further {bound:g}s. Not "
                f"sending {timed_out.command} again (it may still be under way: a second one would run the same "
                f"work twice); check the management server's log (/var/log/cloudstack/management/), then run "
                f"`pulumi up` again")
        api._sleep(api.timeouts.poll_interval)


def configuration(api: Api, name: str, zoneid: str | None = None) -> Obj | None:
    """The setting `name` as CloudStack applies it (listConfigurations matches names by
    substring: the exact one is picked). With `zoneid`, the zone's effective value
    (listConfigurations zoneid= lists only Zone-scoped keys, with the zone's own value or else the
    global one: ConfigurationListingServiceImpl / ManagementServerImpl.searchForConfigurations);
    a setting without Zone scope in this release is read globally. None: no such setting (row)."""
    if zoneid:
        item = _by(api.list("listConfigurations", "configuration", name=name, zoneid=zoneid), name=name)
        if item is not None:
            return item
    return _by(api.list("listConfigurations", "configuration", name=name), name=name)


def _by(items: list[Obj], **match: Any) -> Obj | None:
    hits = [i for i in items if all(str(i.get(k)) == str(v) for k, v in match.items())]
    if len(hits) > 1:
        raise RegistrationError(f"{len(hits)} CloudStack objects match {match}: cannot tell which one to adopt")
    return hits[0] if hits else None


