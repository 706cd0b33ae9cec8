"""CloudStack registration: zone, network, pod, clusters, hosts, storage and settings via the API.

`spec` and `plan` are pure; `CloudStackRegistration` (Pulumi) is imported lazily so
that the main program can build a spec without loading the provider.

Imports `components.model`, Pulumi, `cs`/requests and boto3; its own modules by relative
import. The module path `components.registration.provider` is pickled into every stack's
state by Pulumi's dynamic provider: it must not move.
"""

from .spec import (  # noqa: F401
    ClusterSpec, GlobalSetting, HostSpec, LdapSpec, PhysicalNetworkSpec, PodSpec, PublicRangeSpec, RegistrationSpec,
    SpecError, StorageSpec, Timeouts, ZoneSpec, build_spec, clusters_for, default_global_settings,
)


def __getattr__(name: str):
    if name in ("CloudStackRegistration", "CloudStackRegistrationArgs"):
        from . import component
        return getattr(component, name)
    raise AttributeError(name)
