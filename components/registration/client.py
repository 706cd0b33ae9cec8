"""Talking to CloudStack: keys from Secrets Manager, waiting for the API, retries,
async jobs and the optional JSON-lines trace. The `cs` client signs requests.

Nothing here keeps a secret anywhere but in this process's memory: not in
resource state, not in logs, not in the trace, not in exception messages
(requests go out as POST so no URL carrying parameters can end up in one).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import parse_qsl, urlsplit

import requests

from .spec import Timeouts

LOG = logging.getLogger("cloudstack_ec2.registration")
TRACE_ENV = "CLOUDSTACK_API_TRACE"
#: What is worth retrying, and nothing else (ApiErrorCode.java: 530 INTERNAL_ERROR is what
#: ApiServer/ApiDispatcher answer for *every* CloudRuntimeException, so a 530 is retried
#: only when its text names a known passing condition):
#: - 503: the web container answering before the API servlet is deployed (starting);
#: - 429 API_LIMIT_EXCEED: the api-limit plugin; retried with a longer backoff.
TRANSIENT_HTTP = frozenset({503})
RATE_LIMITED = 429
#: Substrings (lower case) of 530 texts that describe a passing state, each from the
#: source that throws it (apache/cloudstack):
TRANSIENT_530_TEXTS = (
    # ResourceManagerImpl.discoverHosts: a concurrent addHost to a new cluster has not set
    # the cluster's GUID yet.
    "guid is not updated for cluster",
    # ResourceManagerImpl.maintain(PrepareForMaintenanceCmd): VMs moving or starting.
    "host contains incoming vms migrating",
    "host contains vms in starting/stopping state",
    # primary storage attach (zone-wide): the first host is connecting.
    "no host up to associate a storage pool",
)
#: ResourceManagerImpl.maintain: one host per cluster may be in PrepareForMaintenance or
#: ErrorInPrepareForMaintenance; the others are refused (530) until it is done.
CLUSTER_BUSY_TEXT = "there are other servers attempting migrations for maintenance"
#: Texts that mean the object is gone (ResourceManagerImpl: "Host with id N doesn't exist",
#: deleteCluster: "Cluster: N does not exist", the API layer's "Unable to find ...").
GONE_TEXTS = ("doesn't exist", "does not exist", "not found", "unable to find", "cannot find", "couldn't find",
              "invalid parameter id")
_REDACT_MARKERS = ("password", "secret", "signature", "apikey", "token")

T = TypeVar("T")


def _ensure_log_handler() -> None:
    # The dynamic provider runs in Pulumi's provider host, where nothing configures
    # logging; without a handler the progress messages would be lost.
    if not LOG.handlers and not logging.getLogger().handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(levelname)s registration: %(message)s"))
        LOG.addHandler(h)
    if LOG.level == logging.NOTSET:
        LOG.setLevel(logging.INFO)


class RegistrationError(Exception):
    """The registration cannot go on; the message says what and where."""


class TransientError(RegistrationError):
    """Worth retrying: connection refused, HTTP 503, 429, a 530 naming a passing state."""


class RateLimited(TransientError):
    """HTTP 429 (the api-limit plugin): retried with a longer backoff."""


class CallTimedOut(TransientError):
    """No answer within the command's HTTP timeout: the server may still be working on it,
    so a create is looked up (and waited for) before it is ever sent again."""

    def __init__(self, command: str, message: str) -> None:
        super().__init__(message)
        self.command = command


class ClusterBusy(TransientError):
    """Another host of the cluster is in (Error)PrepareForMaintenance (ResourceManagerImpl.maintain)."""


class CloudStackError(RegistrationError):
    def __init__(self, endpoint: str, command: str, code: int | None, text: str) -> None:
        self.endpoint, self.command, self.code, self.text = endpoint, command, code, text
        super().__init__(f"CloudStack {command} at {endpoint} failed (errorcode {code}): {text}")

    @property
    def gone(self) -> bool:
        """The object does not exist (any code: deleteCluster answers 530 for a missing cluster)."""
        return self.code in (431, 530) and any(m in self.text.lower() for m in GONE_TEXTS)


def classify(endpoint: str, command: str, code: Any, text: str, where: str = "") -> RegistrationError:
    """The exception for a CloudStack error answer (HTTP error or failed async job)."""
    low = (text or "").lower()
    what = f"CloudStack {command}{where} at {endpoint}: {text} (errorcode {code})"
    if code == RATE_LIMITED:
        return RateLimited(what)
    if code in TRANSIENT_HTTP:
        return TransientError(what)
    if code == 530 and CLUSTER_BUSY_TEXT in low:
        return ClusterBusy(what)
    if code == 530 and any(t in low for t in TRANSIENT_530_TEXTS):
        return TransientError(what)
    return CloudStackError(endpoint, f"{command}{where}", code, text)


class AuthError(RegistrationError):
    pass


def redact(params: Mapping[str, Any]) -> dict[str, Any]:
    """Any parameter named like a secret; and the `value` of a setting named like one
    (updateConfiguration name=ldap.bind.password value=...)."""
    secret_setting = any(m in str(params.get("name", "")).lower() for m in _REDACT_MARKERS)
    return {k: ("<redacted>" if any(m in k.lower() for m in _REDACT_MARKERS) or (secret_setting and k == "value")
                else v) for k, v in params.items()}


class TracingSession(requests.Session):
    """Appends one JSON object per HTTP call to $CLOUDSTACK_API_TRACE: command, params (redacted), status."""

    _lock = threading.Lock()

    def __init__(self, path: str | None) -> None:
        super().__init__()
        self.trace_path = path

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if not self.trace_path:
            return super().send(request, **kwargs)
        body = request.body or ""
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        params = dict(parse_qsl(urlsplit(request.url or "").query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        command = params.pop("command", "?")
        try:
            response = super().send(request, **kwargs)
        except requests.RequestException as e:
            self._write({"command": command, "params": redact(params), "status": f"error: {type(e).__name__}"})
            raise
        self._write({"command": command, "params": redact(params), "status": response.status_code})
        return response

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True)
        with self._lock, open(self.trace_path, "a", encoding="utf-8") as f:  # type: ignore[arg-type]
            f.write(line + "\n")


class Api:
    """One authenticated CloudStack endpoint.

    Each command gets an HTTP timeout sized for what the server does before it answers
    (`Timeouts.http_timeout_for`): addHost blocks while the management server SSHes in and
    waits for the agent, createStoragePool while every host mounts the pool.
    """

    def __init__(self, endpoint: str, apikey: str, secretkey: str, timeouts: Timeouts,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.endpoint = endpoint
        self.timeouts = timeouts
        self._sleep = sleep
        self._keys = (apikey, secretkey)
        self._clients: dict[float, Any] = {}
        self._clients_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Api {self.endpoint}>"

    def __reduce__(self):  # never pickle an object holding keys
        raise TypeError("Api holds credentials and cannot be pickled")

    def _client(self, timeout: float) -> Any:
        from cs import CloudStack  # imported here: the spec/plan modules stay importable without it

        with self._clients_lock:
            client = self._clients.get(timeout)
            if client is None:
                client = CloudStack(endpoint=self.endpoint, key=self._keys[0], secret=self._keys[1], method="post",
                                    timeout=max(1, int(timeout)), session=TracingSession(os.environ.get(TRACE_ENV)))
                client.timeout = timeout  # cs keeps whole seconds; requests takes any positive number
                self._clients[timeout] = client
            return client

    # -- one call ---------------------------------------------------------
    def call(self, command: str, **params: Any) -> dict[str, Any]:
        """One request. Raises TransientError (and its kinds) only for what is worth
        retrying; CloudStackError with the command and CloudStack's errortext otherwise."""
        from cs import CloudStackApiException, CloudStackException

        params = {k: v for k, v in params.items() if v is not None}
        timeout = self.timeouts.http_timeout_for(command)
        try:
            return getattr(self._client(timeout), command)(**params)
        except requests.Timeout:
            raise CallTimedOut(command, f"{self.endpoint} did not answer {command} within {timeout:g}s") from None
        except requests.ConnectionError as e:
            raise TransientError(f"{self.endpoint} refused or dropped the connection ({type(e).__name__})") from None
        except CloudStackApiException as e:
            err = e.error if isinstance(e.error, dict) else {}
            status = getattr(e.response, "status_code", None)
            code = err.get("errorcode", status)
            text = err.get("errortext", str(e.error))
            if status == 401 or code == 401:
                raise AuthError(
                    f"CloudStack at {self.endpoint} rejected the request (HTTP 401: {text}); check that the keys in "
                    f"the api-keys secret belong to an enabled admin user of this server, and that this machine's "
                    f"clock is right: requests are signed to expire 10 minutes after they are made, so a clock "
                    f"more than that behind the server's is refused too") from None
            raise classify(self.endpoint, command, code, text) from None
        except CloudStackException as e:
            status = getattr(e.response, "status_code", None)
            detail = e.args[0] if e.args else e
            if status in TRANSIENT_HTTP or status == RATE_LIMITED:
                # Not a CloudStack JSON answer: the web container without the API (starting).
                raise classify(self.endpoint, command, status, f"HTTP {status}, not the CloudStack API: {detail}") \
                    from None
            raise RegistrationError(f"{self.endpoint} answered {command} with HTTP {status}, not the CloudStack "
                                    f"API: {detail}; is the endpoint (apiEndpoint) right?") from None

    # -- retries ----------------------------------------------------------
    def retrying(self, what: str, fn: Callable[[], T], budget: float | None = None) -> T:
        """Run an idempotent step, retrying transient failures with backoff, bounded by
        `budget` (default: timeouts.transient_retry). 429 backs off longer."""
        budget = self.timeouts.transient_retry if budget is None else budget
        deadline = time.monotonic() + budget
        delay = min(self.timeouts.poll_interval, 1.0)
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except TransientError as e:
                wait = delay * 4 if isinstance(e, RateLimited) else delay
                if time.monotonic() + wait > deadline:
                    raise RegistrationError(f"{what}: still failing after {attempt} attempts ({budget:g}s): {e}") \
                        from None
                LOG.warning("%s: %s; retrying in %.1fs (attempt %d)", what, e, wait, attempt)
                self._sleep(wait)
                delay = min(delay * 2, max(self.timeouts.poll_interval, 1.0) * 6)

    def get(self, command: str, **params: Any) -> dict[str, Any]:
        """A read-only call, retried on transient failures."""
        return self.retrying(command, lambda: self.call(command, **params))

    def list(self, command: str, key: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while page <= 1000:  # bounded: 500k objects
            data = self.get(command, page=page, pagesize=500, **params)
            chunk = data.get(key, []) if isinstance(data, dict) else []
            items.extend(chunk)
            if not chunk or len(items) >= int(data.get("count", 0)):
                return items
            page += 1
        raise RegistrationError(f"{command}: more pages than expected")

    def job(self, command: str, bound: float | None = None, **params: Any) -> dict[str, Any]:
        """Submit an async command and wait for its result (bounded by `bound`, default
        timeouts.async_job). A failed job raises as an error answer would (`classify`)."""
        submitted = self.call(command, **params)
        jobid = submitted.get("jobid")
        if not jobid:
            raise RegistrationError(f"{command} at {self.endpoint} returned no jobid: {sorted(submitted)}")
        return self.wait_job(command, jobid, bound)

    def wait_job(self, command: str, jobid: str, bound: float | None = None) -> dict[str, Any]:
        bound = self.timeouts.async_job if bound is None else bound
        deadline = time.monotonic() + bound
        while True:
            r = self.get("queryAsyncJobResult", jobid=jobid)
            status = r.get("jobstatus")
            if status == 1:
                return r.get("jobresult") or {}
            if status == 2:
                res = r.get("jobresult") or {}
                code = res.get("errorcode", r.get("jobresultcode"))
                raise classify(self.endpoint, command, code, res.get("errortext", "job failed"), f" job {jobid}")
            if time.monotonic() > deadline:
                raise RegistrationError(f"{command} job {jobid} at {self.endpoint} still pending after "
                                        f"{bound:g}s")
            self._sleep(self.timeouts.poll_interval)


# -- keys and readiness -------------------------------------------------------

#: AWS error codes that mean "these credentials cannot do this": waiting does not help.
CREDENTIAL_ERRORS = ("AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
                     "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch", "InvalidSignatureException",
                     "AuthFailure")
_SESSIONS: dict[tuple, Any] = {}
_SESSIONS_LOCK = threading.Lock()


#: The non-secret keys of one `aws:assumeRoles` entry (pulumi-aws 7's provider config,
#: pulumi_aws/config/outputs.py AssumeRoles; terraform-provider-aws's assume_role block)
#: that the registration passes on, and the AssumeRole parameter each becomes (STS API
#: reference, AssumeRole). aws:accessKey/secretKey/token are never copied into inputs.
ASSUME_ROLE_KEYS = {"roleArn": "RoleArn", "sessionName": "RoleSessionName", "externalId": "ExternalId",
                    "duration": "DurationSeconds", "policy": "Policy", "policyArns": "PolicyArns",
                    "sourceIdentity": "SourceIdentity", "tags": "Tags", "transitiveTagKeys": "TransitiveTagKeys"}
#: Session name when an entry has none (botocore would invent a timestamped one).
DEFAULT_SESSION_NAME = "cloudstack-ec2-registration"
#: pulumi-aws's documented range for `duration`: "between 15 minutes and 12 hours".
DURATION_RANGE = (15 * 60, 12 * 3600)
#: Go's time.ParseDuration units (what pulumi-aws's `duration` string is parsed with), in seconds.
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|ms|s|m|h)")


def duration_seconds(text: str) -> int:
    """Seconds of a Go duration string ("1h", "90m", "1h30m", "3600s"), as pulumi-aws reads
    `aws:assumeRoles[].duration`. Raises ValueError for anything else."""
    text = str(text).strip()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f"duration {text!r} is not a Go duration such as \"1h\", \"90m\" or \"1h30m\"")
    return int(total)


def identity_problems(assume_roles: Any, legacy_assume_role: Any) -> list[tuple[str, Any, str]]:
    """(key, value, message) for each `aws:` setting the registration cannot use: the
    pulumi-aws 6 key `aws:assumeRole` (pulumi-aws 7 replaced it with the list
    `aws:assumeRoles`), an entry without roleArn, a duration that is not a Go duration
    between 15 minutes and 12 hours."""
    problems: list[tuple[str, Any, str]] = []
    if legacy_assume_role not in (None, "", {}):
        role = legacy_assume_role.get("roleArn") if isinstance(legacy_assume_role, Mapping) else legacy_assume_role
        problems.append(("aws:assumeRole", role,
                         "pulumi-aws 7 (what this project uses) no longer reads aws:assumeRole: set aws:assumeRoles, a "
                         "list of {roleArn, sessionName, externalId, duration (e.g. \"1h\"), policy, ...} assumed in "
                         "order, e.g. `pulumi config rm aws:assumeRole && pulumi config set --path "
                         "'aws:assumeRoles[0].roleArn' <role arn>`"))
    if assume_roles in (None, ""):
        return problems
    if not isinstance(assume_roles, (list, tuple)):
        return problems + [("aws:assumeRoles", assume_roles, "must be a list of {roleArn, sessionName, externalId, "
                                                             "duration, ...} objects")]
    for i, role in enumerate(assume_roles):
        key = f"aws:assumeRoles[{i}]"
        if not isinstance(role, Mapping) or not role.get("roleArn"):
            problems.append((key, role, "needs roleArn (the ARN of the IAM role to assume)"))
            continue
        if role.get("duration") not in (None, ""):
            try:
                seconds = duration_seconds(role["duration"])
            except ValueError as e:
                problems.append((f"{key}.duration", role["duration"], str(e)))
                continue
            if not DURATION_RANGE[0] <= seconds <= DURATION_RANGE[1]:
                problems.append((f"{key}.duration", role["duration"],
                                 "must be between 15 minutes and 12 hours (pulumi-aws, STS AssumeRole)"))
    return problems


def identity_from_config(profile: str | None, assume_roles: Any) -> dict[str, Any]:
    """{"profile": ..., "assumeRoles": [{"roleArn", ...}, ...]} from aws:profile and
    aws:assumeRoles (only the keys of ASSUME_ROLE_KEYS; check identity_problems first)."""
    out: dict[str, Any] = {"profile": profile} if profile else {}
    roles = [{k: v for k, v in role.items() if k in ASSUME_ROLE_KEYS and v not in (None, "", [], {})}
             for role in (assume_roles or []) if isinstance(role, Mapping)]
    if roles:
        out["assumeRoles"] = roles
    return out


def assume_role_args(role: Mapping[str, Any]) -> dict[str, Any]:
    """The AssumeRole parameters (other than RoleArn) of one aws:assumeRoles entry."""
    args: dict[str, Any] = {"RoleSessionName": role.get("sessionName") or DEFAULT_SESSION_NAME}
    for key, param in ASSUME_ROLE_KEYS.items():
        value = role.get(key)
        if key in ("roleArn", "sessionName") or value in (None, "", [], {}):
            continue
        if key == "duration":
            value = duration_seconds(value)
        elif key == "policyArns":
            value = [{"arn": arn} for arn in value]
        elif key == "tags":
            value = [{"Key": k, "Value": v} for k, v in sorted(value.items())]
        args[param] = value
    return args


def aws_session(identity: Mapping[str, Any] | None, region: str) -> Any:
    """A boto3 session with the stack's AWS identity: `identity` holds the non-secret parts
    of the stack's `aws:` config (profile; the aws:assumeRoles chain), so the registration
    acts as the same principal as the rest of the stack instead of boto3's defaults. Each
    role is assumed with the previous one's credentials, as pulumi-aws 7 chains them; the
    credentials refresh themselves before they expire (botocore's
    DeferredRefreshableCredentials, as boto3 does for a profile with role_arn), because the
    registration can run longer than an STS session (1 hour by default). Raises
    RegistrationError naming credentials, a profile or a role."""
    import boto3
    import botocore.session
    from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
    from botocore.exceptions import BotoCoreError, ClientError

    identity = dict(identity or {})
    if identity.get("roleArn"):
        # The inputs of a registration declared with pulumi-aws 6's single aws:assumeRole.
        raise RegistrationError(f"the registration got the role {identity['roleArn']} of aws:assumeRole, which "
                                f"pulumi-aws 7 no longer reads: set aws:assumeRoles (a list of {{roleArn, ...}}) "
                                f"and run `pulumi up` again")
    roles = list(identity.get("assumeRoles") or [])
    key = (region, json.dumps(identity, sort_keys=True, default=str))
    with _SESSIONS_LOCK:
        if key in _SESSIONS:
            return _SESSIONS[key]
    profile = identity.get("profile") or None
    try:
        # boto3's default session when nothing is configured (it has loaded its models already)
        session = boto3.Session(profile_name=profile, region_name=region) if profile or roles else \
            boto3._get_default_session()
        credentials = session.get_credentials()
        if credentials is None:
            raise RegistrationError(
                f"the registration has no AWS credentials (profile {profile or 'default'}, region {region}): set "
                f"aws:profile in the stack config or the AWS_* environment variables, as for the rest of the stack")
        if roles:
            for role in roles:
                fetcher = AssumeRoleCredentialFetcher(session._session.create_client, credentials, role["roleArn"],
                                                      extra_args=assume_role_args(role))
                credentials = DeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials,
                                                             method="assume-role")
            # Assume the whole chain now: a role that cannot be assumed fails here, not mid-run.
            credentials.get_frozen_credentials()
            chained = botocore.session.Session(profile=profile)
            # botocore has no public setter; boto3's own role profiles end up the same way.
            chained._credentials = credentials
            session = boto3.Session(botocore_session=chained, region_name=region)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        arns = " -> ".join(r["roleArn"] for r in roles)
        raise RegistrationError(f"the registration cannot assume the role chain {arns} (aws:assumeRoles) with "
                                f"the credentials of profile {profile or 'default'}: {code}: "
                                f"{e.response.get('Error', {}).get('Message', '')}") from None
    except BotoCoreError as e:
        raise RegistrationError(f"the registration cannot use the AWS credentials of profile "
                                f"{profile or 'default'}: {e}") from None
    with _SESSIONS_LOCK:
        _SESSIONS[key] = session
    return session


def read_api_keys(secret_id: str, region: str, timeouts: Timeouts,
                  sleep: Callable[[float], None] = time.sleep, identity: Mapping[str, Any] | None = None
                  ) -> tuple[str, str]:
    """Wait (bounded) until the management server has written the api-keys secret; missing
    or denied credentials fail at once."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

    _ensure_log_handler()
    client = aws_session(identity, region).client("secretsmanager", region_name=region)
    start = time.monotonic()
    next_log = start
    attempts = 0
    while True:
        attempts += 1
        try:
            value = client.get_secret_value(SecretId=secret_id)
            break
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in CREDENTIAL_ERRORS:
                raise RegistrationError(
                    f"the AWS credentials of the registration may not read the API keys secret {secret_id!r} in "
                    f"{region}: {code}. It uses the stack's identity (aws:profile, aws:assumeRoles); that principal "
                    f"needs secretsmanager:GetSecretValue on it") from None
            if code not in ("ResourceNotFoundException", "ThrottlingException", "InternalServiceError"):
                raise RegistrationError(f"cannot read the API keys secret {secret_id!r} in {region}: {code} "
                                        f"({e.response.get('Error', {}).get('Message', '')})") from None
            reason = "no value yet" if code == "ResourceNotFoundException" else code
        except (NoCredentialsError, PartialCredentialsError) as e:
            raise RegistrationError(f"the registration has no usable AWS credentials to read {secret_id!r}: "
                                    f"{e}") from None
        except BotoCoreError as e:
            reason = type(e).__name__
        elapsed = time.monotonic() - start
        if elapsed >= timeouts.secret_wait:
            raise RegistrationError(
                f"the API keys secret {secret_id!r} in {region} has no value after {elapsed:.0f}s "
                f"(timeouts.secret_wait={timeouts.secret_wait:g}s): the management server writes it once its "
                f"API is up; check its boot log (/var/log/cloud-init-output.log)") from None
        if time.monotonic() >= next_log:
            LOG.info("waiting for the management server to write %s (%s; %.0fs of %gs)",
                     secret_id, reason, elapsed, timeouts.secret_wait)
            next_log = time.monotonic() + max(60.0, timeouts.poll_interval)
        sleep(min(timeouts.poll_interval, max(0.0, timeouts.secret_wait - elapsed)))
    try:
        doc = json.loads(value.get("SecretString") or "")
        apikey, secretkey = doc["apikey"], doc["secretkey"]
        if not (isinstance(apikey, str) and isinstance(secretkey, str) and apikey and secretkey):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        # Never echo the value: it may hold a key.
        raise RegistrationError(f"the secret {secret_id!r} does not hold a JSON object with non-empty string "
                                f"fields 'apikey' and 'secretkey'") from None
    LOG.info("read the API keys from %s after %d attempt(s)", secret_id, attempts)
    return apikey, secretkey


def wait_for_api(api: Api) -> None:
    """Wait (bounded) until the API answers an authenticated call; bad keys fail at once."""
    _ensure_log_handler()
    t = api.timeouts
    start = time.monotonic()
    next_log = start
    while True:
        try:
            caps = api.call("listCapabilities").get("capability", {})
            LOG.info("CloudStack %s answers at %s", caps.get("cloudstackversion", "?"), api.endpoint)
            return
        except TransientError as e:
            elapsed = time.monotonic() - start
            if elapsed >= t.api_wait:
                raise RegistrationError(f"the CloudStack API at {api.endpoint} is not up after {elapsed:.0f}s "
                                        f"(timeouts.api_wait={t.api_wait:g}s): {e}") from None
            if time.monotonic() >= next_log:
                LOG.info("waiting for the CloudStack API at %s (%s; %.0fs of %gs)", api.endpoint, e, elapsed,
                         t.api_wait)
                next_log = time.monotonic() + max(60.0, t.poll_interval)
            api._sleep(min(t.poll_interval, max(0.0, t.api_wait - elapsed)))


_READY: dict[tuple[str, str, str], Api] = {}
_READY_LOCK = threading.Lock()


def connect(props: Mapping[str, Any]) -> Api:
    """The Api for a resource's connection properties, waiting for keys and API on first use."""
    endpoint, secret_id, region = props["endpoint"], props["secret_id"], props["region"]
    for k, v in (("endpoint", endpoint), ("secret_id", secret_id), ("region", region)):
        if not isinstance(v, str) or not v:
            raise RegistrationError(f"registration: {k}={v!r} is invalid: a non-empty string")
    timeouts = Timeouts.from_dict(props.get("timeouts") or {})
    key = (endpoint, secret_id, region)
    # One waiter per endpoint: Pulumi runs resources in parallel, and each would
    # otherwise poll Secrets Manager and the API on its own.
    with _READY_LOCK:
        api = _READY.get(key)
        if api is not None:
            api.timeouts = timeouts
            return api
        apikey, secretkey = read_api_keys(secret_id, region, timeouts, identity=props.get("aws"))
        api = Api(endpoint, apikey, secretkey, timeouts)
        try:
            wait_for_api(api)
        except AuthError as e:
            raise AuthError(f"{e} (keys read from secret {secret_id!r} in {region})") from None
        _READY[key] = api
        return api


def forget_connections() -> None:
    """Drop the cached, ready connections (keys rotated, or a new process state wanted)."""
    with _READY_LOCK:
        _READY.clear()
        _TEARDOWN.clear()
    with _SESSIONS_LOCK:
        _SESSIONS.clear()


def probe(props: Mapping[str, Any]) -> Api | None:
    """The Api for a resource's connection properties if CloudStack answers right now, else
    None: one attempt each for the keys and the API, no waiting (used by diff, which runs
    in previews too)."""
    endpoint, secret_id, region = props.get("endpoint"), props.get("secret_id"), props.get("region")
    if not all(isinstance(v, str) and v for v in (endpoint, secret_id, region)):
        return None
    key = (endpoint, secret_id, region)
    with _READY_LOCK:
        api = _READY.get(key)
    if api is not None:
        return api
    quick = Timeouts.from_dict({**(props.get("timeouts") or {}), "secret_wait": 0.001, "api_wait": 0.001,
                                "transient_retry": 0.001, "http_timeout": 10})
    try:
        apikey, secretkey = read_api_keys(secret_id, region, quick, sleep=lambda _s: None, identity=props.get("aws"))
        api = Api(endpoint, apikey, secretkey, quick)
        api.call("listCapabilities")
    except (RegistrationError, Exception):  # a probe: any failure means "cannot tell now"
        return None
    api.timeouts = Timeouts.from_dict(props.get("timeouts") or {})
    return api


#: Endpoints whose cloud is being torn down with its workloads (destroyWithRunningVms, in
#: this provider process): the other resources' deletions then ask CloudStack nothing, since
#: its database and hosts go with the stack.
_TEARDOWN: set[str] = set()


def tear_down(endpoint: str) -> None:
    _TEARDOWN.add(endpoint)


def tearing_down(props: Mapping[str, Any]) -> bool:
    return props.get("endpoint") in _TEARDOWN
