"""A CloudStack API emulator over real HTTP (threaded, 127.0.0.1, random free port).

What it checks, as the real server does (see contract/README.md):
- the request signature: HMAC-SHA1 with the user's secret key over the sorted,
  lower-cased, URL-encoded (java.net.URLEncoder style) parameters; with
  signatureVersion=3 an `expires` that must not be past → else HTTP 401;
- the command exists in contract/commands.json → else HTTP 432;
- every parameter is known to that command and every required one is present → else HTTP 431.

It answers in the shapes of the captured responses (contract/responses/), runs
async jobs after a delay (queryAsyncJobResult), keeps state, and lets tests
inject faults: HTTP errors (530, 533, ...), failing jobs, refused connections
(the listening socket really closed) and "starting" periods (HTTP 503, HTML).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import ipaddress
import json
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, urlsplit

from .accounts import Accounts, AccountsError
from .management_cluster import ApiRefusal, ManagementCluster

CONTRACT = Path(__file__).with_name("contract")
COMMANDS: dict[str, dict[str, Any]] = json.loads((CONTRACT / "commands.json").read_text())
#: Parameters of the request protocol itself, not of any command.
META_PARAMS = {"command", "apikey", "signature", "signatureversion", "expires", "response", "sessionkey", "_"}


def _sample(service: str, command: str, *path: Any) -> dict[str, Any]:
    data = json.loads((CONTRACT / "responses" / f"{service}.json").read_text())[command]
    for p in path:
        data = data[p]
    return data


TEMPLATES = {
    "host": _sample("HostService", "addHost", "addhostresponse", "host", 0),
    "cluster": _sample("ClusterService", "listClusters", "listclustersresponse", "cluster", 2),
    "storagepool": _sample("PoolService", "listStoragePools", "liststoragepoolsresponse", "storagepool", 0),
    "imagestore": _sample("ImageStoreService", "listImageStores", "listimagestoresresponse", "imagestore", 0),
    "vlan": _sample("VLANService", "createVlanIpRange", "createvlaniprangeresponse", "vlan"),
    "physicalnetwork": _sample("NetworkService", "createPhysicalNetwork", "createphysicalnetworkresponse",
                               "jobresult", "physicalnetwork"),
    "configuration": _sample("ConfigurationService", "listConfigurations", "listconfigurationsresponse",
                             "configuration", 0),
    "virtualmachine": _sample("VirtualMachineService", "listVirtualMachines", "listVirtualMachines",
                              "virtualmachine", 0),
    "capability": _sample("ConfigurationService", "listCapabilities", "listcapabilitiesresponse", "capability"),
    "job": _sample("NetworkService", "createPhysicalNetwork", "createphysicalnetworkresponse"),
}

#: Global settings the emulator knows, with CloudStack's defaults. `host` holds what a
#: real server writes on first start: its default-route (underlay) address.
DEFAULT_CONFIG = {
    "storage.overprovisioning.factor": "2",
    "host": "172.31.0.10",
    "management.network.cidr": "172.31.0.0/20",
    "migrate.vm.across.clusters": "false",
    "allow.user.create.projects": "true",
    "integration.api.port": "0",
    "expunge.delay": "86400",
    # api/.../NetworkService.java (since 4.18, zone scope, Integer): VR interface MTUs.
    "vr.public.interface.max.mtu": "1500",
    "vr.private.interface.max.mtu": "1500",
    # The console settings the registration reads (components/model/consoles.py), with the defaults
    # of current releases: ConsoleProxyManager.ConsoleProxyUrlDomain (ConfigKey, default "":
    # console URLs name the console proxy's public IP; isDynamic=false, so the management server
    # reads it when it starts), Config.ConsoleProxySslEnabled ("false"), and novnc.console.port
    # (the websocket port, "8080"; marvin test_console_endpoint_change_websocket_traffic).
    "consoleproxy.url.domain": "",
    "consoleproxy.sslEnabled": "false",
    "novnc.console.port": "8080",
    # ConsoleProxyManager.ConsoleProxyLaunchMax (Integer, zone scope, default 10; Config
    # .ConsoleProxyLaunchMax in older releases): how many console proxies a zone may launch
    # (ConsoleProxyManagerImpl.allowToLaunchNew). The emulator launches one per zone anyway.
    "consoleproxy.launch.max": "10",
    # ConfigurationManagerImpl SystemVMPublicIpReservationModeStrictness (default false).
    "system.vm.public.ip.reservation.mode.strictness": "false",
    **{  # plugins/user-authenticators/ldap LdapConfiguration.java: the ConfigKeys and defaults (None: NULL)
        "ldap.provider": "openldap", "ldap.basedn": None, "ldap.bind.principal": None, "ldap.bind.password": None,
        "ldap.user.object": "inetOrgPerson", "ldap.username.attribute": "uid",
        "ldap.user.memberof.attribute": "memberof", "ldap.search.group.principle": None,
        "ldap.email.attribute": "mail", "ldap.firstname.attribute": "givenname", "ldap.lastname.attribute": "sn",
        "ldap.group.object": "groupOfUniqueNames", "ldap.group.user.uniquemember": "uniquemember",
        "ldap.truststore": None, "ldap.truststore.password": None, "ldap.read.timeout": "1000",
        "ldap.request.page.size": "1000", "ldap.nested.groups.enable": "true",
    },
    # CapacityManager.ImageStoreNFSVersion (String, ImageStore scope, default null: the mount
    # negotiates): the NFS version system VMs mount secondary storage with.
    "secstorage.nfs.version": None,
    # A TLS front end's settings, global ConfigKeys with these defaults: ApiServer
    # EnableSecureSessionCookie, useForwardHeader, listOfForwardHeaders, proxyForwardList;
    # ApiServiceConfiguration ApiServletPath.
    "enable.secure.session.cookie": "false",
    "endpoint.url": "http://localhost:8080/client/api",
    "proxy.header.verify": "false",
    "proxy.header.names": "X-Forwarded-For,HTTP_CLIENT_IP,HTTP_X_FORWARDED_FOR",
    "proxy.cidr": "",
    # IndirectAgentLBServiceImpl.IndirectAgentLBAlgorithm (default static).
    "indirect.agent.lb.algorithm": "static",
}
#: Settings with ConfigKey.Scope.ImageStore: listConfigurations / updateConfiguration with
#: imagestoreuuid (the store's value, else the global one; SystemVmTemplateRegistration.getNfsVersion).
IMAGE_STORE_SCOPED_CONFIG = {"secstorage.nfs.version"}
#: Settings of the category Secure (LdapConfiguration.java: the bind principal and password, the
#: truststore password): stored encrypted, and listConfigurations answers them encrypted again
#: (ApiResponseHelper.createConfigurationResponse: `if (cfg.isEncrypted())
#: cfgResponse.setValue(DBEncryptionUtil.encrypt(cfg.getValue()))`, a new salt each time).
SECURE_CONFIG = {"ldap.bind.principal", "ldap.bind.password", "ldap.truststore.password"}
#: LdapConfiguration.java: every ldap.* ConfigKey has ConfigKey.Scope.Domain (a domain's own value,
#: else the global one: ConfigKey.valueIn); updateConfiguration with domainid refuses any other key.
DOMAIN_SCOPED_CONFIG = {n for n in DEFAULT_CONFIG if n.startswith("ldap.")}
#: The management server that runs: its mshost row's address (cluster.node.IP, which
#: cloudstack-setup-databases -i writes; the overlay address), its version, and the
#: underlay address it wrote into `host` (where agents reach it too).
FIRST_MANAGEMENT_SERVER = ("10.100.0.2", "4.22.1.0", DEFAULT_CONFIG["host"])
#: Settings whose ConfigKey type is Integer: ConfigurationManagerImpl.validateConfigurationValue
#: refuses a value that does not parse as one.
INTEGER_CONFIG = {"vr.public.interface.max.mtu", "vr.private.interface.max.mtu", "expunge.delay",
                  "integration.api.port", "novnc.console.port", "consoleproxy.launch.max"}
#: Settings whose ConfigKey type is Boolean (ApiServer): ConfigurationManagerImpl
#: .validateConfigurationValue refuses anything but exactly "true" or "false" ("Please enter
#: either 'true' or 'false'.").
BOOLEAN_CONFIG = {"enable.secure.session.cookie", "proxy.header.verify"}
#: Settings with ConfigKey.Scope.Zone (ConsoleProxyManager: consoleproxy.url.domain,
#: consoleproxy.sslEnabled, consoleproxy.launch.max; NetworkService: the VR MTUs). listConfigurations
#: with zoneid lists only these (ConfigurationListingServiceImpl / ManagementServerImpl
#: .searchForConfigurations: `scope` must include Zone and ConfigDepot must know the key), each with
#: the zone's value or else the global one (ConfigKey.valueIn / valueInScope); updateConfiguration
#: with zoneid refuses any other ("Invalid scope id provided for the parameter ...",
#: ConfigurationManagerImpl.validateConfigurationValue).
ZONE_SCOPED_CONFIG = {"consoleproxy.url.domain", "consoleproxy.sslEnabled", "consoleproxy.launch.max",
                      "vr.public.interface.max.mtu", "vr.private.interface.max.mtu"}
#: ConfigurationManagerImpl.DOMAIN_NAME_PATTERN: what a setting with the range "domainName"
#: accepts (Config.ConsoleProxyUrlDomain in releases that still have the Config entry;
#: validateConfigurationValue strips a leading "*." and refuses 238 characters or more). The last
#: label is letters only, so an IPv4 address is refused. Newer releases moved the key to a
#: ConfigKey without the range check; the emulator keeps the stricter rule, so what passes here
#: passes on both.
DOMAIN_NAME_PATTERN = re.compile(r"^((?!-)[A-Za-z0-9-]{1,63}(?<!-)\.)+[A-Za-z]{1,63}$")
DOMAIN_NAME_CONFIG = {"consoleproxy.url.domain"}
#: The system VM types the emulator launches itself (their addresses are the zone's to give).
SYSTEM_VM_TYPES = ("SecondaryStorageVm", "ConsoleProxy")
#: The control network of KVM system VMs (ControlNetworkGuru: the link-local control.cidr).
LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")


class Blocking:
    """A handler's answer that comes only after `seconds` (the lock released meanwhile)."""

    def __init__(self, seconds: float, finish: Callable[[], dict]) -> None:
        self.seconds, self.finish = seconds, finish


class ApiError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


def java_urlencode(value: str) -> str:
    # java.net.URLEncoder.encode(v, "UTF-8").replace("+", "%20"): like quote(), but
    # '~' is encoded too (Python leaves it alone).
    return quote(value, safe="*").replace("~", "%7E")


def signature_of(params: dict[str, str], secret: str) -> str:
    text = "&".join(f"{k}={java_urlencode(v)}" for k, v in sorted(params.items()) if k.lower() != "signature")
    digest = hmac.new(secret.encode(), text.lower().encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _uuid() -> str:
    return str(uuid.uuid4())


def _ldap_command_error(message: str) -> "ApiError":
    """addLdapConfiguration / deleteLdapConfiguration: LdapAddConfigurationCmd.execute and
    LdapDeleteConfigurationCmd.execute catch LdapManagerImpl's InvalidParameterValueException and
    throw ServerApiException(ApiErrorCode.INTERNAL_ERROR, e.toString()): 530, the exception's
    class name before its message."""
    return ApiError(530, f"com.cloud.exception.InvalidParameterValueException: {message}")


class Emulator(ManagementCluster, Accounts):
    def __init__(self, *, apikey: str = "emu-apikey", secretkey: str = "emu-secretkey", job_delay: float = 0.02,
                 host_connect_delay: float = 0.02, maintenance_delay: float = 0.05, port: int = 0,
                 add_host_delay: float = 0.02, admin_password: str = "emu-admin-password") -> None:
        self.users = {apikey: secretkey}
        self.apikey, self.secretkey = apikey, secretkey
        self.job_delay, self.host_connect_delay, self.maintenance_delay = job_delay, host_connect_delay, \
            maintenance_delay
        self.lock = threading.RLock()
        #: seconds one addHost blocks (SSH, cloudstack-setup-agent, waitForHostConnect)
        self.add_host_delay = add_host_delay
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._reopen_timer: threading.Timer | None = None
        # state
        self.zones: dict[str, dict] = {}
        self.physnets: dict[str, dict] = {}
        self.traffictypes: dict[str, dict] = {}
        self.nsps: dict[str, dict] = {}
        self.elements: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}
        self.vlans: dict[str, dict] = {}
        self.clusters: dict[str, dict] = {}
        self.hosts: dict[str, dict] = {}
        self.vms: dict[str, dict] = {}
        self.pools: dict[str, dict] = {}
        self.imagestores: dict[str, dict] = {}
        self.config: dict[str, str | None] = dict(DEFAULT_CONFIG)
        self.domain_config: dict[tuple[str, str], str] = {}  # (domain id, name) → the domain's own value
        #: listDomains: ROOT, which every installation has (path "ROOT", level 0)
        root = _uuid()
        self.domains: dict[str, dict] = {root: {"id": root, "name": "ROOT", "path": "ROOT", "level": 0,
                                                "haschild": False}}
        self.ldap_configurations: list[dict] = []          # cloud.ldap_configuration (global rows)
        self.ldap_links: dict[str, dict] = {}              # cloud.ldap_trust_map's domain links (account 0)
        self.zone_config: dict[tuple[str, str], str] = {}   # (zone id, name) → the zone's own value
        self.store_config: dict[tuple[str, str], str] = {}  # (image store id, name) → the store's own value
        self.jobs: dict[str, dict] = {}
        # Versions. The database schema's version (cloud.version), each management server's
        # (instance id -> the version it runs; None: stopped; empty: one implicit server on the
        # schema's version), every database upgrade and every start of a server beside running
        # ones of another version (apache/cloudstack 11973).
        self.db_version = "4.22.1.0"
        self.servers: dict[str, str | None] = {}
        self.db_upgrades: list[tuple[str, str]] = []
        self.version_skew: list[tuple[str, str, str]] = []
        self.system_template_version = "4.22.0"              # systemvm-kvm-<this>
        self.system_templates: dict[str, set[str]] = {}   # zone id → hypervisors with a system VM template
        self.template_ready_at: dict[str, float] = {}      # zone id → when its system VM template is Ready
        self.template_delay = 0.02                         # seeding the template into the image store
        self.add_image_store_delay = 0.0                   # addImageStore answering late
        self.system_vm_delay = 0.05                        # a system VM from Starting to Running
        #: system VM types that never reach Running (e.g. "SecondaryStorageVm": it cannot mount the store)
        self.stuck_system_vms: set[str] = set()
        self.lost_vms: list[str] = []                      # VMs Running on a host when it was deleted
        self.held_public_ips: list[str] = []               # public addresses taken by others (hold_public_ip)
        self.system_vm_seq = 0                             # the last system VM's id in its name
        #: overlay address → why the host cannot be added yet ("no-key": the management
        #: server's key is not authorized; "no-agent": cloudstack-agent not installed)
        self.unready_hosts: dict[str, str] = {}
        self.adding: set[str] = set()                      # addHost calls under way (addresses)
        self.duplicate_adds: list[str] = []                # addHost sent again while one was under way
        self.most_adding = 0                               # most addHost calls under way at once
        self.capacity: dict[str, int] = {}                 # host id → VMs it can take (default: no limit)
        #: alerts (AlertResponse: id, type, name, description, sent), newest last
        self.alerts: list[dict] = []
        # fault injection
        self._http_faults: list[list[Any]] = []            # [command|"*", status, count, text]
        self._job_faults: list[list[Any]] = []             # [command, count, code, text]
        self._unavailable_until = 0.0
        # what came in
        self.requests: list[dict[str, Any]] = []           # every request: command, params, status
        self._init_management(*FIRST_MANAGEMENT_SERVER)
        # the emulator's own key pair and `admin_password` are the root admin's
        self._init_accounts(apikey, admin_password)

    def api_names(self) -> set[str]:
        return set(COMMANDS)

    # -- server lifecycle ------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/client/api"

    def start(self) -> "Emulator":
        emu = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._serve(urlsplit(self.path).query)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode("utf-8") if n else ""
                q = urlsplit(self.path).query
                self._serve("&".join(x for x in (q, body) if x))

            def _serve(self, query: str) -> None:
                status, ctype, payload, cookie = emu.handle(query, self.headers.get("Cookie", ""))
                data = payload.encode("utf-8")
                # One request per connection: once the emulator "goes down", every new
                # request really meets a refused connection (no kept-alive socket survives).
                self.close_connection = True
                self.send_response(status)
                self.send_header("Connection", "close")
                self.send_header("Content-Type", ctype)
                if cookie:
                    self.send_header("Set-Cookie", cookie)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._reopen_timer:
            self._reopen_timer.cancel()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def refuse_connections_for(self, seconds: float) -> None:
        """Close the listening socket (connections are refused), reopen it on the same port later."""
        self.stop()
        self._reopen_timer = threading.Timer(seconds, self.start)
        self._reopen_timer.daemon = True
        self._reopen_timer.start()

    def unavailable_for(self, seconds: float) -> None:
        """Answer HTTP 503 with an HTML page (the web container is up, the API is not yet)."""
        self._unavailable_until = time.monotonic() + seconds

    def inject_http_error(self, command: str = "*", status: int = 530, count: int = 1,
                          text: str = "injected internal error") -> None:
        with self.lock:
            self._http_faults.append([command, status, count, text])

    def inject_job_failure(self, command: str, count: int = 1, code: int = 530,
                           text: str = "injected job failure") -> None:
        with self.lock:
            self._job_faults.append([command, count, code, text])

    # -- test helpers ----------------------------------------------------------
    def add_vm(self, host_id: str, name: str, migratable: bool = True, type: str = "User",
               ha: bool = False) -> str:
        """A Running VM: type User, DomainRouter, SecondaryStorageVm or ConsoleProxy;
        migratable=False: on the host's local storage."""
        with self.lock:
            vid = _uuid()
            self.vms[vid] = {"id": vid, "name": name, "hostid": host_id, "state": "Running",
                             "migratable": migratable, "type": type, "ha": ha}
            if type in ("DomainRouter", *SYSTEM_VM_TYPES):
                self.vms[vid]["template"] = self.system_template_version   # deployed on the current one
            return vid

    def kill_host(self, ip: str, state: str = "Alert") -> None:
        """The host's instance is gone: the agent stops pinging (Alert, Disconnected or Down),
        and the management server raises a host alert (AgentManagerImpl.handleDisconnect:
        AlertType.ALERT_TYPE_HOST, "Host disconnected, ..."; AlertManager ALERT_TYPE_HOST = 7)."""
        with self.lock:
            h = self.host_by_ip(ip)
            h["state"] = state
            self.alerts.append({"id": _uuid(), "type": 7, "name": "ALERT.HOST",
                                "description": f"Host disconnected, name: {h['name']} (id:{h['id']}), "
                                               f"availability zone: {h['zonename']}, pod: {h['podname']}",
                                "sent": _now()})

    def host_by_ip(self, ip: str) -> dict:
        with self.lock:
            self._advance()
            return next(h for h in self.hosts.values() if h["ipaddress"] == ip)

    def accepted_calls(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["status"] == 200]

    # -- request handling ------------------------------------------------------
    def handle(self, query: str, cookie: str = "") -> tuple[int, str, str, str]:
        """(HTTP status, content type, body, Set-Cookie value or "") of one request; `cookie`:
        the request's Cookie header."""
        if time.monotonic() < self._unavailable_until:
            return 503, "text/html", "<html><body>HTTP ERROR 503 Service Unavailable</body></html>", ""
        pairs = parse_qsl(query, keep_blank_values=True)
        params = dict(pairs)
        command = params.get("command", "")
        rkey = f"{command.lower()}response"
        body: Any = None
        set_cookie = ""
        with self.lock:
            try:
                if command == "login":
                    # ApiServlet answers login before it checks a signature or a session.
                    body, set_cookie = self.login(params)
                else:
                    body = self._dispatch(command, params, cookie)
                status = 200
            except (ApiError, AccountsError) as e:
                status = e.code
                body = {"uuidList": [], "errorcode": e.code, "cserrorcode": 9999, "errortext": e.text}
            except Exception as e:  # an emulator bug: fail loudly, never as a retryable code
                status = 500
                body = {"errorcode": 500, "errortext": f"emulator bug: {type(e).__name__}: {e}"}
        if isinstance(body, Blocking):
            # The real call holds its HTTP request open while it works (addHost: SSH, agent
            # setup, waiting for the agent): sleep without the lock, then finish.
            time.sleep(body.seconds)
            with self.lock:
                try:
                    body = body.finish()
                except ApiError as e:
                    status = e.code
                    body = {"uuidList": [], "errorcode": e.code, "cserrorcode": 9999, "errortext": e.text}
        with self.lock:
            self.requests.append({"command": command, "params": {k: v for k, v in params.items()
                                                                  if k.lower() not in META_PARAMS
                                                                  and k.lower() != "password"},
                                  "status": status})
        return status, "application/json; charset=UTF-8", json.dumps({rkey: body}), set_cookie

    def _dispatch(self, command: str, params: dict[str, str], cookie: str) -> Any:
        """The answer body of an authenticated command (raises ApiError/AccountsError)."""
        user_id = self._authenticate(params, cookie)
        if command not in COMMANDS:
            raise ApiError(432, f"The given command:{command} does not exist or it is not available for "
                                f"user")
        # ApiServer.verifyRequest checks the role before ApiDispatcher reads the parameters.
        self.check_access(user_id, command)
        args = self._validate(command, params)
        for fault in self._http_faults:
            if fault[2] > 0 and fault[0] in ("*", command):
                fault[2] -= 1
                raise ApiError(fault[1], fault[3])
        self._advance()
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            raise ApiError(530, f"the emulator does not implement {command}")
        try:
            return handler(args)
        except ApiRefusal as e:
            raise ApiError(530, str(e)) from None

    def _authenticate(self, params: dict[str, str], cookie: str) -> str:
        """The id of the user the request is made by: its API key's (signed), or, without
        an API key, its login session's (accounts.Accounts.session_user)."""
        fail = ApiError(401, "unable to verify user credentials and/or request signature")
        lower = {k.lower(): v for k, v in params.items()}
        if "apikey" not in lower:
            user_id = self.session_user(lower.get("sessionkey", ""), cookie)
            if user_id is None:
                raise fail
            return user_id
        secret = self.users.get(lower.get("apikey", ""))
        if secret is None or "signature" not in lower:
            raise fail
        if lower.get("signatureversion") == "3":
            try:
                expires = datetime.strptime(lower.get("expires", ""), "%Y-%m-%dT%H:%M:%S%z")
            except ValueError:
                raise fail from None
            if expires < datetime.now(timezone.utc):
                raise fail
        if not hmac.compare_digest(signature_of(params, secret), lower["signature"]):
            raise fail
        return self.key_owner[lower["apikey"]]

    def _validate(self, command: str, params: dict[str, str]) -> dict[str, str]:
        spec = COMMANDS[command]
        known = spec["params"]
        args: dict[str, str] = {}
        unknown = []
        for k, v in params.items():
            lk = k.lower()
            if lk in META_PARAMS:
                continue
            base = lk.split("[", 1)[0]
            if base not in known:
                unknown.append(k)
                continue
            t = known[base]
            if t == "bool" and v.lower() not in ("true", "false"):
                raise ApiError(431, f"Unable to execute API command {command.lower()} due to invalid value. "
                                    f"Invalid parameter {k} value={v} due to incorrect type boolean")
            if t in ("int", "int64", "long", "short") and not v.lstrip("-").isdigit():
                raise ApiError(431, f"Unable to execute API command {command.lower()} due to invalid value. "
                                    f"Invalid parameter {k} value={v} due to incorrect long value format")
            args[lk] = v
        if unknown:
            raise ApiError(431, f"Received unknown parameters for command {command.lower()}. Unknown "
                                f"parameters : {' '.join(sorted(unknown))}")
        missing = [r for r in spec["required"] if r not in {a.split('[', 1)[0] for a in args}]
        if missing:
            raise ApiError(431, f"Unable to execute API command {command.lower()} due to missing parameter "
                                f"{missing[0]}")
        return args

    # -- async jobs and time ------------------------------------------------------
    def _submit(self, command: str, run: Callable[[], dict], instance: tuple[str, str] | None = None) -> dict:
        jobid = _uuid()
        self.jobs[jobid] = {"jobid": jobid, "cmd": command, "created": _now(), "ready": time.monotonic() +
                            self.job_delay, "status": 0, "run": run, "result": None, "code": 0,
                            "instance": instance}
        out = {"jobid": jobid}
        if instance:
            out["id"] = instance[1]
        return out

    def _advance(self) -> None:
        now = time.monotonic()
        for job in self.jobs.values():
            if job["status"] == 0 and job["ready"] <= now:
                try:
                    for fault in self._job_faults:
                        if fault[1] > 0 and fault[0] == job["cmd"]:
                            fault[1] -= 1
                            raise ApiError(fault[2], fault[3])
                    job["result"], job["status"] = job["run"](), 1
                except ApiError as e:
                    job["result"], job["status"], job["code"] = {"errorcode": e.code, "errortext": e.text}, 2, e.code
        for h in self.hosts.values():
            if h["state"] == "Connecting" and h["up_at"] <= now:
                h["state"] = "Up"
            if h["state"] == "Disconnected" and h.get("_reconnect_at", float("inf")) <= now:
                h["state"] = "Up"   # the restarted agent connected again
                h.pop("_reconnect_at")
            if h["resourcestate"] in ("PrepareForMaintenance", "ErrorInPrepareForMaintenance") \
                    and h["maintenance_at"] <= now:
                self._attempt_maintain(h)
        self._launch_system_vms(now)
        self._advance_management(now)

    def _launch_system_vms(self, now: float) -> None:
        """SecondaryStorageManagerImpl / ConsoleProxyManagerImpl capacity scans: an Enabled zone
        with a Ready system VM template, primary storage and an Up, Enabled host gets one
        secondary storage VM and one console proxy (never in a Disabled zone)."""
        for v in self.vms.values():
            if v["type"] in ("SecondaryStorageVm", "ConsoleProxy") and v["state"] == "Starting" \
                    and v.get("_running_at", 0) <= now and v["type"] not in self.stuck_system_vms:
                v["state"] = "Running"
        for z in self.zones.values():
            if z["allocationstate"] != "Enabled" or self.template_ready_at.get(z["id"], float("inf")) > now:
                continue
            if "KVM" not in self.system_templates.get(z["id"], set()):
                continue
            hosts = [h for h in self.hosts.values() if h["zoneid"] == z["id"] and h["state"] == "Up"
                     and h["resourcestate"] == "Enabled"]
            if not hosts or not any(p["zoneid"] == z["id"] for p in self.pools.values()):
                continue
            have = {v["type"] for v in self.vms.values() if v.get("_zoneid") == z["id"]}
            for kind, prefix in (("SecondaryStorageVm", "s"), ("ConsoleProxy", "v")):
                if kind not in have:
                    # VirtualMachineName: s-<id>-VM / v-<id>-VM, ids from one sequence, never reused
                    self.system_vm_seq += 1
                    n = self.system_vm_seq
                    # their system service offerings offer HA: restarted elsewhere when the host dies
                    vid = self.add_vm(hosts[0]["id"], f"{prefix}-{n}-VM", type=kind, ha=True)
                    # createProxyInstance / createSecStorageVmInstance persist the VM record before
                    # VirtualMachineManagerImpl.allocate gives it its NICs: without addresses it stays
                    # listed, Stopped, and never runs.
                    self.vms[vid].update(state="Stopped", hostid=None, _zoneid=z["id"], _awaiting_addresses=True,
                                         created=_now())
            for v in self.vms.values():
                if v.get("_zoneid") == z["id"] and v.get("_awaiting_addresses"):
                    # Retried on every capacity scan here (the real retry goes through the stopped
                    # pool, assignProxyFromStoppedPool; simplified).
                    if self._allocate_system_vm_addresses(v, z, hosts[0]):
                        v.update(state="Starting", hostid=hosts[0]["id"], _awaiting_addresses=False,
                                 _running_at=now + self.system_vm_delay)

    # -- system VMs' addresses --------------------------------------------------------
    def _allocate_system_vm_addresses(self, v: dict, z: dict, host: dict) -> bool:
        """The NICs of a console proxy or secondary storage VM, all or nothing (allocate runs in one
        transaction). Read in apache/cloudstack:
        - createProxyInstance / createSecStorageVmInstance: the default NIC is on the zone's public
          network (advanced zone without security groups), then the control and management networks;
        - PublicNetworkGuru.allocate → getIp → IpAddressManagerImpl.assignPublicIpAddress(forSystemVms
          = true) → listAvailablePublicIps: a Free address of a VirtualNetwork range
          (createVlanIpRange forvirtualnetwork=true), ranges created `forsystemvms` first, then the
          others (system.vm.public.ip.reservation.mode.strictness false); none free →
          InsufficientAddressCapacityException ("Insufficient address capacity");
        - the management NIC takes an address of the pod's reserved range (PodBasedNetworkGuru;
          none free → InsufficientAddressCapacityException too);
        - the control NIC a link-local address (ControlNetworkGuru, control.cidr 169.254.0.0/16).
        Returns False, changing nothing, when an address is missing."""
        public = self._free_public_ip(z["id"], for_system_vms=True)
        pod = self._pod_of(host)
        private = self._free_pod_ip(pod) if pod else None
        if public is None or private is None:
            return False
        ip, vlan = public
        used_ll = {x.get("linklocalip") for x in self.vms.values()}
        n = 2   # 169.254.0.1 is control.gateway
        while str(LINK_LOCAL[n]) in used_ll:
            n += 1
        linklocal = str(LINK_LOCAL[n])
        v.update(publicip=ip, publicnetmask=vlan["netmask"], gateway=vlan["gateway"],
                 publicvlan=[vlan["vlan"].removeprefix("vlan://")], _publicvlanid=vlan["id"],
                 privateip=private, privatenetmask=pod["netmask"], _podid=pod["id"],
                 linklocalip=linklocal, linklocalnetmask=str(LINK_LOCAL.netmask),
                 publicmacaddress=self._mac(), privatemacaddress=self._mac(), linklocalmacaddress=self._mac())
        return True

    @staticmethod
    def _mac() -> str:
        return "1e:00:" + ":".join(f"{b:02x}" for b in uuid.uuid4().bytes[:4])

    def _pod_of(self, host: dict) -> dict | None:
        return self.pods.get(self.clusters.get(host.get("clusterid") or "", {}).get("podid") or "") or \
            next((p for p in self.pods.values() if p["zoneid"] == host.get("zoneid")), None)

    def _free_pod_ip(self, pod: dict) -> str | None:
        used = {x.get("privateip") for x in self.vms.values()}
        start, end = ipaddress.IPv4Address(pod["startip"]), ipaddress.IPv4Address(pod["endip"])
        return next((str(a) for a in map(ipaddress.IPv4Address, range(int(start), int(end) + 1))
                     if str(a) not in used), None)

    def _free_public_ip(self, zone_id: str, for_system_vms: bool) -> tuple[str, dict] | None:
        """The first Free address (ascending; the real DAO takes one row ordered by forSystemVms,
        then vlan id) of the zone's VirtualNetwork ranges: for system VMs the `forsystemvms` ranges
        first, for anything else only the other ranges (listAvailablePublicIps)."""
        used = {x.get("publicip") for x in self.vms.values()} | set(self.held_public_ips)
        ranges = [r for r in self.vlans.values() if r["zoneid"] == zone_id and r["forvirtualnetwork"]]
        strict = self.config.get("system.vm.public.ip.reservation.mode.strictness") == "true"
        if for_system_vms and strict:
            # Strict: system VMs only from the `forsystemvms` ranges; none free there is
            # "Insufficient address capacity", no fallback (IpAddressManagerImpl). (The real
            # setting is not dynamic: a server reads it at start; here it applies at once.)
            ranges = [r for r in ranges if r.get("forsystemvms")]
        elif for_system_vms:
            ranges.sort(key=lambda r: not r.get("forsystemvms"))   # stable: creation order otherwise
        elif strict:
            ranges = [r for r in ranges if not r.get("forsystemvms")]
        else:
            # Not strict (the default): older releases only ORDER the search (the other ranges
            # first) and hand a `forsystemvms` address to anything once the rest is taken
            # (IpAddressManagerImpl: the forSystemVms filter only when
            # SystemVmPublicIpReservationModeStrictness; apache/cloudstack #4310, #5902).
            ranges.sort(key=lambda r: bool(r.get("forsystemvms")))
        for r in ranges:
            start, end = ipaddress.IPv4Address(r["startip"]), ipaddress.IPv4Address(r["endip"])
            for n in range(int(start), int(end) + 1):
                if str(ipaddress.IPv4Address(n)) not in used:
                    return str(ipaddress.IPv4Address(n)), r
        return None

    def hold_public_ip(self, zone_id: str, for_system_vms: bool = False) -> str:
        """Test helper: something else takes the first free public address of the zone, as a
        guest network's virtual router does for its source NAT (assignSourceNatIpAddress →
        fetchNewPublicIp, forSystemVms=false: never an address of a `forsystemvms` range). With
        `for_system_vms`, as another system VM does (the `forsystemvms` ranges first), e.g. a
        secondary storage VM relaunched just before the console proxy. Returns the address."""
        with self.lock:
            got = self._free_public_ip(zone_id, for_system_vms=for_system_vms)
            if got is None:
                raise ValueError(f"zone {zone_id} has no free public address")
            self.held_public_ips.append(got[0])
            return got[0]

    def release_public_ips(self) -> None:
        with self.lock:
            self.held_public_ips.clear()

    def destroy_system_vm(self, vm_id: str) -> None:
        """Test helper: the system VM is expunged at once (its NICs deallocated: its public address
        is Free again, PublicNetworkGuru.deallocate), as destroySystemVm's job does; the next
        capacity scan launches a new one."""
        with self.lock:
            self.vms.pop(vm_id)

    def _attempt_maintain(self, h: dict) -> None:
        """ResourceManagerImpl.attemptMaintain: migrations done → Maintenance; some failed while
        others run → ErrorInPrepareForMaintenance; nothing left to try → ErrorInMaintenance."""
        if h["resourcestate"] == "ErrorInPrepareForMaintenance" or \
                (self._vms_on(h["id"]) and not h.get("_migrations_scheduled", True)):
            # Step 3: running VMs and no migration (pending or scheduled) left to try
            h["resourcestate"] = "ErrorInMaintenance"
            return
        stuck = []
        for vm in self._vms_on(h["id"]):
            targets = [t for t in self._targets(h)
                       if len(self._vms_on(t["id"])) < self.capacity.get(t["id"], 10 ** 6)]
            targets.sort(key=lambda t: len(self._vms_on(t["id"])))
            if vm["migratable"] and targets:
                vm["hostid"] = targets[0]["id"]
            else:
                stuck.append(vm)
        if stuck:
            h["resourcestate"] = "ErrorInPrepareForMaintenance"
            h["maintenance_at"] = time.monotonic() + self.maintenance_delay
        else:
            h["resourcestate"] = "Maintenance"

    def _cmd_queryAsyncJobResult(self, a: dict) -> dict:
        job = self.jobs.get(a["jobid"])
        if job is None:
            raise ApiError(431, f"Unable to find a job by id {a['jobid']}")
        out = {k: v for k, v in TEMPLATES["job"].items() if k in ("accountid", "userid")}
        out.update(cmd=f"org.apache.cloudstack.api.command.admin.{job['cmd']}Cmd", jobstatus=job["status"],
                   jobprocstatus=0, jobresultcode=job["code"], created=job["created"], jobid=job["jobid"])
        if job["instance"]:
            out.update(jobinstancetype=job["instance"][0], jobinstanceid=job["instance"][1])
        if job["status"] != 0:
            out.update(jobresulttype="object", jobresult=job["result"], completed=_now())
        return out

    # -- rendering -------------------------------------------------------------------
    @staticmethod
    def _tmpl(template: str, /, **over: Any) -> dict:
        return {**copy.deepcopy(TEMPLATES[template]), **over}

    @staticmethod
    def _public(obj: dict) -> dict:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def _list(self, key: str, items: list[dict], a: dict) -> dict:
        if not items:
            return {}  # CloudStack answers an empty list as an empty object
        page, size = int(a.get("page", 1)), int(a.get("pagesize", 500))
        return {"count": len(items), key: items[(page - 1) * size: page * size]}

    @staticmethod
    def _match(obj: dict, a: dict, *keys: str) -> bool:
        # `name` on list calls matches as a case-insensitive substring (the DAOs' LIKE %name%,
        # e.g. ListHostsCmd / listClusters / listZones in QueryManagerImpl)
        return all(k not in a or (str(obj.get(k, "")).lower().find(a[k].lower()) >= 0 if k == "name"
                                  else str(obj.get(k)) == a[k]) for k in keys)

    @staticmethod
    def _entity(table: dict, param: str, id_: str) -> dict:
        """The object a UUID parameter names; none: the API layer's answer (ParamProcessWorker)."""
        found = table.get(id_)
        if found is None:
            raise ApiError(431, f"Unable to execute API command due to invalid value. Invalid parameter {param} "
                                f"value={id_} due to incorrect long value format, or entity does not exist")
        return found

    def _zone(self, zid: str) -> dict:
        return self._entity(self.zones, "zoneid", zid)

    def _get(self, table: dict, id_: str, what: str) -> dict:
        if id_ not in table:
            raise ApiError(431, f"Unable to execute API command due to invalid value. Invalid parameter id "
                                f"value={id_}: {what} not found")
        return table[id_]

    # -- capabilities, configuration --------------------------------------------------
    @property
    def version(self) -> str:
        """What listCapabilities reports: the running servers' version (the schema's if none is modelled)."""
        running = sorted({v for v in self.servers.values() if v})
        return running[0] if running else self.db_version

    def _cmd_listCapabilities(self, a: dict) -> dict:
        return {"capability": self._tmpl("capability", cloudstackversion=self.version)}

    # -- the management servers' and agents' packages (what an instance's upgrade does) ----------
    def stop_server(self, server: str) -> None:
        """`systemctl stop cloudstack-management` on a server; with none left running, the API's
        port is closed (connections refused)."""
        self.servers[server] = None
        if not any(self.servers.values()):
            self.stop()

    def start_server(self, server: str, version: str) -> None:
        """A server starts on `version`. DatabaseUpgradeChecker.check at its start: a schema older
        than the code is upgraded (once: the next server finds it current), a newer one refused
        (the server does not start); the new release's system VM template is registered from the
        package (SystemVmTemplateRegistration). Started beside running servers of another
        version, the start is recorded as skew (apache/cloudstack 11973)."""
        key = tuple(map(int, version.split(".")))
        if key < tuple(map(int, self.db_version.split("."))):
            raise RuntimeError(f"the database is version {self.db_version}, newer than {version}: not started")
        for other, running in self.servers.items():
            if running and running != version and other != server:
                self.version_skew.append((server, version, running))
        if key > tuple(map(int, self.db_version.split("."))):
            self.db_upgrades.append((self.db_version, version))
            self.db_version = version
            self.system_template_version = ".".join(version.split(".")[:3])
            for zid in self.template_ready_at:
                self.template_ready_at[zid] = time.monotonic() + self.template_delay
        self.servers[server] = version
        if self._server is None:
            self.start()

    def upgrade_agent(self, ip: str, version: str) -> None:
        """The agent of host `ip` restarted on `version`: Disconnected until it connects again
        (its guests keep running: the upgrade guides' KVM section)."""
        h = next(h for h in self.hosts.values() if h["ipaddress"] == ip)
        h.update(state="Disconnected", version=version, _reconnect_at=time.monotonic() + self.system_vm_delay)

    def _config_item(self, name: str, zone_id: str | None = None, store_id: str | None = None) -> dict:
        value = self.config[name] if zone_id is None else self.zone_config.get((zone_id, name), self.config[name])
        if store_id is not None:
            value = self.store_config.get((store_id, name), value)
        category = "Secure" if name in SECURE_CONFIG else "Advanced"
        if category == "Secure" and value is not None:
            value = base64.b64encode(uuid.uuid4().bytes + value.encode()).decode()   # encrypted, salted
        item = self._tmpl("configuration", name=name, value=value, category=category,
                          description=f"{name} (emulated)")
        if value is None:  # a null value is left out of the response, like every null field
            item.pop("value", None)
        return item

    def seed_configuration(self, name: str, value: str) -> None:
        """Test helper: what the management server's boot writes into cloud.configuration with SQL
        (INSERT ... ON DUPLICATE KEY UPDATE value) for a setting CloudStack reads only with
        configDao.getValue and has no Config/ConfigKey entry for (consoleproxy.static.publicIp and
        consoleproxy.static.port, read by ConsoleProxyManagerImpl.configure). Until then the row is
        absent: listConfigurations does not list it and updateConfiguration refuses it."""
        with self.lock:
            self.config[name] = value

    def _cmd_listConfigurations(self, a: dict) -> dict:
        # like the real server, `name` matches as a substring
        names = [n for n in sorted(self.config) if a.get("name", "") in n]
        zone_id = store_id = None
        if a.get("zoneid"):
            zone_id = self._zone(a["zoneid"])["id"]
            names = [n for n in names if n in ZONE_SCOPED_CONFIG]
        if a.get("imagestoreuuid"):
            store_id = self._get(self.imagestores, a["imagestoreuuid"], "image store")["id"]
            names = [n for n in names if n in IMAGE_STORE_SCOPED_CONFIG]
        return self._list("configuration", [self._config_item(n, zone_id, store_id) for n in names], a)

    def _cmd_updateConfiguration(self, a: dict) -> dict:
        name, value = a["name"], a.get("value", "")
        if name not in self.config:
            # ConfigurationManagerImpl.updateConfiguration: no row and no ConfigKey of that name
            raise ApiError(431, f"Config parameter with name {name} doesn't exist")
        zone_id = self._zone(a["zoneid"])["id"] if a.get("zoneid") else None
        if zone_id is not None and name not in ZONE_SCOPED_CONFIG:
            raise ApiError(431, f"Invalid scope id provided for the parameter {name}")
        if a.get("domainid"):
            if name not in DOMAIN_SCOPED_CONFIG:
                raise ApiError(431, f"Invalid scope id provided for the parameter {name}")
            self.domain_config[(self._domain(a["domainid"])["id"], name)] = value
            return {"configuration": self._config_item(name)}
        if name in INTEGER_CONFIG and not re.fullmatch(r"-?\d+", value):
            raise ApiError(431, f"Please enter a valid integer value for parameter {name}")
        if name in BOOLEAN_CONFIG and value not in ("true", "false"):
            raise ApiError(431, "Please enter either 'true' or 'false'.")
        if name in DOMAIN_NAME_CONFIG and value.strip():
            domain = value.strip()
            domain = domain[2:] if domain.startswith("*") else domain
            if len(domain) >= 238 or not DOMAIN_NAME_PATTERN.fullmatch(domain):
                raise ApiError(431, "Please enter a valid string for domain name, prefixed with '*.' if applicable")
        try:
            self._check_management_setting(name, value)
        except ApiRefusal as e:
            raise ApiError(431, str(e)) from None
        store_id = self._get(self.imagestores, a["imagestoreuuid"], "image store")["id"] \
            if a.get("imagestoreuuid") else None
        if store_id is not None and name not in IMAGE_STORE_SCOPED_CONFIG:
            raise ApiError(431, f"Invalid scope id provided for the parameter {name}")
        if store_id is not None:
            self.store_config[(store_id, name)] = value
        elif zone_id is None:
            self.config[name] = value
        else:
            self.zone_config[(zone_id, name)] = value
        if name in ("host", "indirect.agent.lb.algorithm"):
            self._propagate_ms_list()
        return {"configuration": self._config_item(name, zone_id, store_id)}

    def _cmd_resetConfiguration(self, a: dict) -> dict:
        if a["name"] not in self.config:
            raise ApiError(431, f"Config parameter with name {a['name']} doesn't exist")
        self.config[a["name"]] = DEFAULT_CONFIG.get(a["name"], "")
        return {"configuration": self._config_item(a["name"])}

    # -- domains, LDAP (plugins/user-authenticators/ldap LdapManagerImpl) ---------------
    def _domain(self, domain_id: str) -> dict:
        return self._entity(self.domains, "domainid", domain_id)

    def _cmd_listDomains(self, a: dict) -> dict:
        items = [d for d in self.domains.values() if self._match(d, a, "id", "name")]
        return self._list("domain", [dict(d) for d in items], a)

    def _setting_in(self, name: str, domain_id: str | None) -> str | None:
        """ConfigKey.valueIn(domainId): the domain's own value, else the global one."""
        return self.domain_config.get((domain_id, name), self.config[name]) if domain_id else self.config[name]

    def _ldap_bind(self, hostname: str, port: int) -> None:
        """LdapContextFactory.createBindContext: a simple bind as ldap.bind.principal with
        ldap.bind.password to the server (anonymous when both are unset, getAuthentication
        "none"); any failure is addConfigurationInternal's InvalidParameterValueException."""
        from ldap3 import NONE, Connection, Server

        if self.config["ldap.truststore"]:
            raise ApiError(530, "the emulator does not emulate LDAPS (ldap.truststore is set)")
        principal, password = self.config["ldap.bind.principal"], self.config["ldap.bind.password"]
        timeout = max(1, int(self.config["ldap.read.timeout"] or 1000) // 1000)   # ldap3 takes whole seconds
        try:
            conn = Connection(Server(hostname, port=port, get_info=NONE, connect_timeout=timeout),
                              user=principal, password=password, receive_timeout=timeout, raise_exceptions=False)
            ok = conn.bind()
            conn.unbind()
        except Exception:  # unresolvable host, refused connection: NamingException / IOException
            ok = False
        if not ok:
            raise _ldap_command_error("Unable to bind to the given LDAP server")

    @staticmethod
    def _ldap_response(row: dict) -> dict:
        # LdapConfigurationResponse (createLdapConfigurationResponse, to a root admin)
        return {"hostname": row["hostname"], "port": row["port"], "id": row["id"], "domainid": row["domainid"]}

    def _cmd_addLdapConfiguration(self, a: dict) -> dict:
        if a.get("domainid"):
            raise ApiError(530, "the emulator keeps global LDAP configurations only")
        port = int(a["port"]) if int(a["port"]) > 0 else 389   # addConfigurationInternal: port <= 0 → 389
        if any(r["hostname"] == a["hostname"] and r["port"] == port for r in self.ldap_configurations):
            raise _ldap_command_error("Duplicate configuration")   # hostname:port is unique for a domain binding
        self._ldap_bind(a["hostname"], port)
        row = {"id": _uuid(), "hostname": a["hostname"], "port": port, "domainid": None}
        self.ldap_configurations.append(row)
        return {"LdapConfiguration": self._ldap_response(row)}

    def _cmd_listLdapConfigurations(self, a: dict) -> dict:
        # LdapConfigurationDaoImpl.getSearchCriteria: without domainid or listall, global rows only
        rows = [r for r in self.ldap_configurations
                if ("hostname" not in a or r["hostname"] == a["hostname"])
                and (int(a.get("port", 0)) <= 0 or r["port"] == int(a["port"]))
                and ("id" not in a or r["id"] == a["id"])]
        return self._list("LdapConfiguration", [self._ldap_response(r) for r in rows], a)

    def _cmd_deleteLdapConfiguration(self, a: dict) -> dict:
        if not a.get("id") and not a.get("hostname"):
            raise _ldap_command_error("Either id or hostname must be specified")
        port = int(a.get("port", 0))
        for r in self.ldap_configurations:
            # LdapConfigurationDaoImpl.getSearchCriteria: the port filters only when above 0
            if (r["id"] == a.get("id")) if a.get("id") else (
                    r["hostname"] == a["hostname"] and (port <= 0 or r["port"] == port)):
                self.ldap_configurations.remove(r)
                return {"LdapConfiguration": self._ldap_response(r)}
        if a.get("id"):
            raise _ldap_command_error(f"Cannot find configuration with id {a['id']}")
        raise _ldap_command_error(f"Cannot find configuration with hostname {a['hostname']}")

    def _cmd_linkDomainToLdap(self, a: dict) -> dict:
        """LdapManagerImpl.linkDomainToLdap: commons-lang Validate's and the LinkType enum's
        IllegalArgumentException reach the caller as 431 (ApiServer.handleRequest answers it as
        ApiErrorCode.PARAM_ERROR); a second link of the domain breaks the unique key
        uk_ldap_trust_map__bind_location (domain_id, account_id), which GenericDaoBase.persist
        turns into EntityExistsException("Entity already exists "), answered as 530 with its
        message (ApiServer: an unhandled exception, to a root admin)."""
        domain = self._domain(a["domainid"])
        base_dn = self._setting_in("ldap.basedn", domain["id"])
        if base_dn is None:
            raise ApiError(431, f"can not link a domain (with id = {domain['id']}) unless a basedn (null) is "
                                f"configured for it.")
        ldap_domain = a.get("ldapdomain") or a.get("name") or ""
        if not ldap_domain:
            raise ApiError(431, "ldapDomain cannot be empty, please supply a GROUP or OU name")
        if int(a["accounttype"]) not in (0, 2):
            raise ApiError(431, "accountype should be either 0(normal user) or 2(domain admin)")
        kind = a["type"].upper()
        if kind not in ("GROUP", "OU"):
            raise ApiError(431, f"No enum constant org.apache.cloudstack.ldap.LdapManager.LinkType.{kind}")
        if domain["id"] in self.ldap_links:
            raise ApiError(530, "Entity already exists ")
        link = {"domainid": domain["id"], "type": kind, "ldapdomain": ldap_domain, "name": ldap_domain,
                "accounttype": int(a["accounttype"])}
        self.ldap_links[domain["id"]] = link
        return {"LinkDomainToLdap": dict(link)}

    # -- zones -------------------------------------------------------------------------
    def _cmd_createZone(self, a: dict) -> dict:
        if any(z["name"] == a["name"] for z in self.zones.values()):
            raise ApiError(431, f"A zone with name {a['name']} already exists")
        if a["networktype"] not in ("Advanced", "Basic"):
            raise ApiError(431, f"Invalid network type {a['networktype']}")
        zid = _uuid()
        self.zones[zid] = {"id": zid, "name": a["name"], "networktype": a["networktype"], "dns1": a["dns1"],
                           "internaldns1": a["internaldns1"], "guestcidraddress": a.get("guestcidraddress"),
                           # ConfigurationManagerImpl.createZone: Disabled unless asked otherwise
                           "allocationstate": a.get("allocationstate", "Disabled"), "securitygroupsenabled": False,
                           "localstorageenabled": False, "zonetoken": _uuid(), "dhcpprovider": "VirtualRouter",
                           "tags": [], "type": "Core"}
        return {"zone": self.zones[zid]}

    def _cmd_listZones(self, a: dict) -> dict:
        return self._list("zone", [z for z in self.zones.values() if self._match(z, a, "id", "name")], a)

    def _cmd_updateZone(self, a: dict) -> dict:
        z = self._get(self.zones, a["id"], "zone")
        if a.get("allocationstate") == "Enabled":
            ok = any(p["zoneid"] == z["id"] and p["state"] == "Enabled" for p in self.physnets.values())
            if not ok:
                raise ApiError(431, "Zone cannot be enabled: it has no enabled physical network")
        for k in ("name", "dns1", "internaldns1", "guestcidraddress", "allocationstate"):
            if k in a:
                z[k] = a[k]
        return {"zone": z}

    def _cmd_deleteZone(self, a: dict) -> dict:
        z = self._get(self.zones, a["id"], "zone")
        if any(p["zoneid"] == z["id"] for p in self.pods.values()) or \
                any(p["zoneid"] == z["id"] for p in self.physnets.values()):
            raise ApiError(530, "The zone is not deletable because there are pods or physical networks in it")
        del self.zones[z["id"]]
        return {"success": True}

    # -- physical networks, traffic types, providers ----------------------------------------
    def _cmd_createPhysicalNetwork(self, a: dict) -> dict:
        z = self._zone(a["zoneid"])
        pid = _uuid()

        def run() -> dict:
            self.physnets[pid] = self._tmpl("physicalnetwork", id=pid, name=a["name"], zoneid=z["id"],
                                            zonename=z["name"], state="Disabled",
                                            isolationmethods=a.get("isolationmethods", "VLAN"),
                                            broadcastdomainrange=a.get("broadcastdomainrange", "ZONE"))
            for name, state in (("VirtualRouter", "Disabled"), ("VpcVirtualRouter", "Disabled"),
                                ("InternalLbVm", "Disabled"), ("ConfigDrive", "Enabled"),
                                ("SecurityGroupProvider", "Disabled")):
                self._add_nsp(pid, name, state)
            return {"physicalnetwork": self.physnets[pid]}
        return self._submit("createPhysicalNetwork", run, ("PhysicalNetwork", pid))

    def _add_nsp(self, pid: str, name: str, state: str) -> dict:
        nid = _uuid()
        self.nsps[nid] = {"id": nid, "name": name, "physicalnetworkid": pid, "state": state,
                          "canenableindividualservice": True, "servicelist": []}
        if name in ("VirtualRouter", "VpcVirtualRouter", "InternalLbVm"):
            eid = _uuid()
            self.elements[eid] = {"id": eid, "nspid": nid, "enabled": False,
                                  "_kind": "internallb" if name == "InternalLbVm" else "virtualrouter"}
        return self.nsps[nid]

    def _cmd_listPhysicalNetworks(self, a: dict) -> dict:
        return self._list("physicalnetwork", [p for p in self.physnets.values()
                                              if self._match(p, a, "id", "zoneid", "name")], a)

    def _cmd_updatePhysicalNetwork(self, a: dict) -> dict:
        p = self._get(self.physnets, a["id"], "physical network")

        def run() -> dict:
            if "vlan" in a:
                s, _, e = a["vlan"].partition("-")
                if not (s.isdigit() and e.isdigit() and 1 <= int(s) <= int(e) <= 4094):
                    raise ApiError(431, f"Invalid vlan range {a['vlan']}")
                p["vlan"] = a["vlan"]
            if "state" in a:
                p["state"] = a["state"]
            return {"physicalnetwork": p}
        return self._submit("updatePhysicalNetwork", run, ("PhysicalNetwork", p["id"]))

    def _cmd_deletePhysicalNetwork(self, a: dict) -> dict:
        p = self._get(self.physnets, a["id"], "physical network")

        def run() -> dict:
            # NetworkServiceImpl.checkIfPhysicalNetworkIsDeletable: refused while guest networks
            # (here: user VMs, which need one) or allocated public IPs (system VMs hold them)
            # use it; otherwise its VLAN ranges, traffic types and providers go with it.
            in_zone = [v for v in self.vms.values() if self.hosts.get(v["hostid"] or "", {}).get("zoneid") ==
                       p["zoneid"] or v.get("_zoneid") == p["zoneid"]]
            if any(v["type"] == "User" for v in in_zone):
                raise ApiError(530, "The Physical Network is not deletable because there are networks associated to "
                                    "this physical network")
            if any(v["type"] in ("SecondaryStorageVm", "ConsoleProxy") for v in in_zone):
                raise ApiError(530, "The Physical Network is not deletable because there are public IP addresses "
                                    "allocated for this physical network")
            for v in [v for v in self.vlans.values() if v["physicalnetworkid"] == p["id"]]:
                del self.vlans[v["id"]]
            for t in [t for t in self.traffictypes.values() if t["physicalnetworkid"] == p["id"]]:
                del self.traffictypes[t["id"]]
            for n in [n for n in self.nsps.values() if n["physicalnetworkid"] == p["id"]]:
                del self.nsps[n["id"]]
            del self.physnets[p["id"]]
            return {"success": True}
        return self._submit("deletePhysicalNetwork", run)

    def _cmd_addTrafficType(self, a: dict) -> dict:
        p = self._get(self.physnets, a["physicalnetworkid"], "physical network")
        if a["traffictype"] not in ("Public", "Guest", "Management", "Storage"):
            raise ApiError(431, f"Invalid traffic type {a['traffictype']}")
        tid = _uuid()

        def run() -> dict:
            if any(t["physicalnetworkid"] == p["id"] and t["traffictype"] == a["traffictype"]
                   for t in self.traffictypes.values()):
                raise ApiError(431, f"This physical network already supports the traffic type {a['traffictype']}")
            self.traffictypes[tid] = {"id": tid, "traffictype": a["traffictype"], "physicalnetworkid": p["id"],
                                      "kvmnetworklabel": a.get("kvmnetworklabel")}
            return {"traffictype": self.traffictypes[tid]}
        return self._submit("addTrafficType", run, ("PhysicalNetworkTrafficType", tid))

    def _cmd_listTrafficTypes(self, a: dict) -> dict:
        items = [t for t in self.traffictypes.values() if t["physicalnetworkid"] == a["physicalnetworkid"]]
        return self._list("traffictype", items, a)

    def _cmd_updateTrafficType(self, a: dict) -> dict:
        t = self._get(self.traffictypes, a["id"], "traffic type")

        def run() -> dict:
            if "kvmnetworklabel" in a:
                t["kvmnetworklabel"] = a["kvmnetworklabel"]
            return {"traffictype": t}
        return self._submit("updateTrafficType", run)

    def _cmd_deleteTrafficType(self, a: dict) -> dict:
        t = self._get(self.traffictypes, a["id"], "traffic type")

        def run() -> dict:
            self.traffictypes.pop(t["id"], None)
            return {"success": True}
        return self._submit("deleteTrafficType", run)

    def _cmd_listNetworkServiceProviders(self, a: dict) -> dict:
        items = [n for n in self.nsps.values() if self._match(n, a, "physicalnetworkid", "name", "state")]
        return self._list("networkserviceprovider", items, a)

    def _cmd_addNetworkServiceProvider(self, a: dict) -> dict:
        p = self._get(self.physnets, a["physicalnetworkid"], "physical network")

        def run() -> dict:
            if any(n["physicalnetworkid"] == p["id"] and n["name"] == a["name"] for n in self.nsps.values()):
                raise ApiError(431, f"The provider {a['name']} is already added to the physical network")
            return {"networkserviceprovider": self._add_nsp(p["id"], a["name"], "Disabled")}
        return self._submit("addNetworkServiceProvider", run)

    def _cmd_updateNetworkServiceProvider(self, a: dict) -> dict:
        n = self._get(self.nsps, a["id"], "network service provider")

        def run() -> dict:
            if a.get("state") == "Enabled":
                el = [e for e in self.elements.values() if e["nspid"] == n["id"]]
                if el and not all(e["enabled"] for e in el):
                    raise ApiError(431, "Provider is not ready, cannot Enable the provider, please configure "
                                        "the provider first")
            if "state" in a:
                n["state"] = a["state"]
            return {"networkserviceprovider": n}
        return self._submit("updateNetworkServiceProvider", run)

    def _elements(self, kind: str, a: dict) -> list[dict]:
        return [self._public(e) for e in self.elements.values() if e["_kind"] == kind
                and self._match(e, a, "id", "nspid")
                and ("enabled" not in a or str(e["enabled"]).lower() == a["enabled"])]

    def _configure_element(self, kind: str, key: str, command: str, a: dict) -> dict:
        e = self._get(self.elements, a["id"], "element")
        if e["_kind"] != kind:
            raise ApiError(431, f"{a['id']} is not a {kind} element")

        def run() -> dict:
            e["enabled"] = a["enabled"] == "true"
            return {key: self._public(e)}
        return self._submit(command, run)

    def _cmd_listVirtualRouterElements(self, a: dict) -> dict:
        return self._list("virtualrouterelement", self._elements("virtualrouter", a), a)

    def _cmd_configureVirtualRouterElement(self, a: dict) -> dict:
        return self._configure_element("virtualrouter", "virtualrouterelement", "configureVirtualRouterElement", a)

    def _cmd_listInternalLoadBalancerElements(self, a: dict) -> dict:
        return self._list("internalloadbalancerelement", self._elements("internallb", a), a)

    def _cmd_configureInternalLoadBalancerElement(self, a: dict) -> dict:
        return self._configure_element("internallb", "internalloadbalancerelement",
                                       "configureInternalLoadBalancerElement", a)

    # -- pods, public ranges ---------------------------------------------------------------
    def _pod_view(self, p: dict) -> dict:
        v = dict(p)
        v.update(startip=[p["startip"]], endip=[p["endip"]],  # lists since 4.13 (several ranges per pod)
                 ipranges=[{"startip": p["startip"], "endip": p["endip"], "forsystemvms": "0", "vlanid": None}])
        return v

    def _cmd_createPod(self, a: dict) -> dict:
        z = self._zone(a["zoneid"])
        if any(p["zoneid"] == z["id"] and p["name"] == a["name"] for p in self.pods.values()):
            raise ApiError(431, f"A pod with name {a['name']} already exists in zone {z['name']}")
        for k in ("gateway", "netmask", "startip"):
            if k not in a:
                raise ApiError(431, f"Unable to execute API command createpod due to missing parameter {k}")
        pid = _uuid()
        self.pods[pid] = {"id": pid, "name": a["name"], "zoneid": z["id"], "zonename": z["name"],
                          "gateway": a["gateway"], "netmask": a["netmask"], "startip": a["startip"],
                          "endip": a.get("endip", a["startip"]), "allocationstate": "Enabled"}
        return {"pod": self._pod_view(self.pods[pid])}

    def _cmd_listPods(self, a: dict) -> dict:
        return self._list("pod", [self._pod_view(p) for p in self.pods.values()
                                  if self._match(p, a, "id", "zoneid", "name")], a)

    def _cmd_updatePod(self, a: dict) -> dict:
        # ConfigurationManagerImpl.editPod(UpdatePodCmd) passes null for startIp and endIp
        # (4.19 and the current source): the range parameters are accepted and ignored.
        p = self._get(self.pods, a["id"], "pod")
        for k in ("name", "gateway", "netmask", "allocationstate"):
            if k in a:
                p[k] = a[k]
        return {"pod": self._pod_view(p)}

    def _cmd_updatePodManagementNetworkIpRange(self, a: dict) -> dict:
        """PodServiceImpl / ConfigurationManagerImpl.updatePodIpRange (since 4.16): the pod's
        range (currentstartip-currentendip, which must exist) becomes newstartip-newendip
        (a missing end keeps the current one); refused when nothing changes, when start > end,
        or when the new range leaves out an address already taken (the system VMs' management
        NICs: checkIpRangeContainsTakenAddresses)."""
        p = self._get(self.pods, a["podid"], "pod")
        cur = (a["currentstartip"], a["currentendip"])
        new = (a.get("newstartip") or cur[0], a.get("newendip") or cur[1])
        if "newstartip" not in a and "newendip" not in a:
            raise ApiError(431, "Either new starting IP address or new ending IP address must be specified")
        if new == cur:
            raise ApiError(431, "New starting and ending IP address are the same as current starting and ending "
                                "IP address")
        start, end = ipaddress.IPv4Address(new[0]), ipaddress.IPv4Address(new[1])
        if start > end:
            raise ApiError(431, "The start IP address must have a lower value than the end IP address.")
        if cur != (p["startip"], p["endip"]):
            raise ApiError(431, f"The input IP range: {cur[0]}-{cur[1]} of pod: {p['id']} is not present. "
                                "Please input an existing range.")
        taken = [v["privateip"] for v in self.vms.values() if v.get("_podid") == p["id"] and v.get("privateip")]
        if any(not start <= ipaddress.IPv4Address(ip) <= end for ip in taken):
            raise ApiError(431, "The IP range does not contain some IP addresses that have already been taken. "
                                "Please adjust your IP range to include all IP addresses already taken.")

        def run() -> dict:
            p.update(startip=new[0], endip=new[1])
            return {"success": True}

        return self._submit("updatePodManagementNetworkIpRange", run)

    def _cmd_deletePod(self, a: dict) -> dict:
        p = self._get(self.pods, a["id"], "pod")
        if any(c["podid"] == p["id"] for c in self.clusters.values()):
            raise ApiError(530, f"The pod {p['name']} cannot be deleted: it has clusters")
        del self.pods[p["id"]]
        return {"success": True}

    def _cmd_createVlanIpRange(self, a: dict) -> dict:
        z = self._zone(a.get("zoneid", ""))
        p = self._get(self.physnets, a.get("physicalnetworkid", ""), "physical network")
        if not any(t["physicalnetworkid"] == p["id"] and t["traffictype"] == "Public"
                   for t in self.traffictypes.values()):
            raise ApiError(431, f"Physical network {p['id']} does not support Public traffic")
        start, end = ipaddress.IPv4Address(a["startip"]), ipaddress.IPv4Address(a.get("endip", a["startip"]))
        for v in self.vlans.values():
            if v["zoneid"] == z["id"] and start <= ipaddress.IPv4Address(v["endip"]) and \
                    ipaddress.IPv4Address(v["startip"]) <= end:
                raise ApiError(431, "The IP range already has IPs that overlap with the new range")
        vid = _uuid()
        net = ipaddress.IPv4Network(f"{a['gateway']}/{a['netmask']}", strict=False)
        vlan = a.get("vlan", "untagged")
        self.vlans[vid] = self._tmpl("vlan", id=vid, zoneid=z["id"], physicalnetworkid=p["id"],
                                     gateway=a["gateway"], netmask=a["netmask"], cidr=str(net),
                                     startip=a["startip"], endip=a.get("endip", a["startip"]),
                                     vlan=f"vlan://{vlan}", networkid=_uuid(),
                                     forvirtualnetwork=a.get("forvirtualnetwork", "true") == "true",
                                     # a range dedicated to system VMs' public NICs (listAvailablePublicIps)
                                     forsystemvms=a.get("forsystemvms", "false") == "true")
        return {"vlan": self.vlans[vid]}

    def _cmd_listVlanIpRanges(self, a: dict) -> dict:
        return self._list("vlaniprange", [v for v in self.vlans.values()
                                          if self._match(v, a, "id", "zoneid", "physicalnetworkid")], a)

    def _cmd_deleteVlanIpRange(self, a: dict) -> dict:
        r = self._get(self.vlans, a["id"], "vlan range")
        # ConfigurationManagerImpl.deleteVlanAndPublicIpRange (a range of no account): refused
        # while addresses of it are allocated (countIPs(zone, vlan, allocated=true)), e.g. the
        # system VMs' public IPs
        start, end = ipaddress.IPv4Address(r["startip"]), ipaddress.IPv4Address(r["endip"])
        in_use = [ip for ip in [v.get("publicip") for v in self.vms.values()] + self.held_public_ips
                  if ip and start <= ipaddress.IPv4Address(ip) <= end]
        if in_use:
            raise ApiError(431, f"{len(in_use)}  Ips are in use. Cannot delete this vlan")
        del self.vlans[a["id"]]
        return {"success": True}

    # -- clusters and hosts -------------------------------------------------------------------
    def _cmd_addCluster(self, a: dict) -> dict:
        z = self._zone(a["zoneid"])
        p = self._get(self.pods, a["podid"], "pod")
        if p["zoneid"] != z["id"]:
            raise ApiError(431, "The pod is not in the zone")
        if a["hypervisor"] not in ("KVM", "XenServer", "VMware", "Simulator"):
            raise ApiError(431, f"Unable to resolve Hypervisor.Type {a['hypervisor']}")
        if a["clustertype"] not in ("CloudManaged", "ExternalManaged"):
            raise ApiError(431, f"Unable to resolve {a['clustertype']} to a supported type")
        if any(c["podid"] == p["id"] and c["name"] == a["clustername"] for c in self.clusters.values()):
            raise ApiError(431, f"Cluster with name {a['clustername']} already exists in pod {p['name']}")
        cid = _uuid()
        self.clusters[cid] = self._tmpl("cluster", id=cid, name=a["clustername"], podid=p["id"], podname=p["name"],
                                        zoneid=z["id"], zonename=z["name"], hypervisortype=a["hypervisor"],
                                        clustertype=a["clustertype"], managedstate="Managed",
                                        allocationstate="Enabled")
        return {"count": 1, "cluster": [self.clusters[cid]]}

    def _cmd_listClusters(self, a: dict) -> dict:
        return self._list("cluster", [c for c in self.clusters.values()
                                      if self._match(c, a, "id", "zoneid", "podid", "name")], a)

    def _cmd_updateCluster(self, a: dict) -> dict:
        c = self._get(self.clusters, a["id"], "cluster")
        if "clustername" in a:
            c["name"] = a["clustername"]
        return {"cluster": c}

    def _cmd_deleteCluster(self, a: dict) -> dict:
        c = self._get(self.clusters, a["id"], "cluster")
        if any(h["clusterid"] == c["id"] for h in self.hosts.values()):
            raise ApiError(530, f"Cluster: {c['id']} cannot be removed. Cluster still has hosts")
        del self.clusters[c["id"]]
        return {"success": True}

    def _host_view(self, h: dict) -> dict:
        return self._tmpl("host", **self._public({k: v for k, v in h.items()
                                                   if k not in ("up_at", "maintenance_at", "username")}))

    def _cmd_addHost(self, a: dict) -> dict | Blocking:
        z = self._zone(a["zoneid"])
        p = self._get(self.pods, a["podid"], "pod")
        c = self._get(self.clusters, a.get("clusterid", ""), "cluster")
        if c["podid"] != p["id"] or p["zoneid"] != z["id"]:
            raise ApiError(431, "The cluster is not in the given pod/zone")
        if a["hypervisor"] != c["hypervisortype"]:
            raise ApiError(431, f"Cannot add host with hypervisor {a['hypervisor']} to cluster of "
                                f"{c['hypervisortype']}")
        if not a["url"].startswith("http://"):
            raise ApiError(431, f"Invalid url {a['url']}: a KVM host is added as http://<address>")
        if a["hypervisor"] == "KVM" and not a.get("username"):
            # ResourceManagerImpl.discoverHostsFull: InvalidParameterValueException
            raise ApiError(431, "Username need to be provided.")
        ip = a["url"][len("http://"):].strip("/")
        url = a["url"]
        not_found = ApiError(530, f"Unable to add the host: Cannot find the server resources at {url}")
        if ip in self.adding:
            # The real server does not see a call under way: it would SSH in and run the agent
            # setup a second time. Recorded so that tests can refuse it.
            self.duplicate_adds.append(ip)
        if any(h["ipaddress"] == ip and h["zoneid"] == z["id"] for h in self.hosts.values()):
            # LibvirtServerDiscoverer.find (hosts of the same zone): "Skipping host ... is already in the database" is a
            # CloudRuntimeException caught inside find(), which then returns null, so
            # ResourceManagerImpl.discoverHostsFull answers "Cannot find the server resources";
            # AddHostCmd turns the DiscoveryException into 530 INTERNAL_ERROR.
            raise not_found
        # ResourceManagerImpl.discoverHosts: a cluster without GUID that has hosts
        if c.get("_guid") is None and any(h["clusterid"] == c["id"] for h in self.hosts.values()):
            raise ApiError(530, "Guid is not updated for cluster with specified cluster id; need to wait for hosts "
                                "in this cluster to come up")
        c["_guid"] = c["id"]   # LibvirtServerDiscoverer.find sets it first thing
        self.adding.add(ip)
        self.most_adding = max(self.most_adding, len(self.adding))

        def finish() -> dict:
            self.adding.discard(ip)
            why = self.unready_hosts.get(ip)
            if why == "no-key":
                # LibvirtServerDiscoverer.find: DiscoveredWithErrorException("Authentication error"),
                # wrapped by ResourceManagerImpl.discoverHostsFull
                raise ApiError(530, f"Could not add host at [{url}] with zone [{z['id']}], pod [{p['id']}] and "
                                    f"cluster [{c['id']}] due to: [Authentication error].")
            if why is not None:
                raise not_found   # e.g. cloudstack-setup-agent missing: find() returns null
            if any(h["ipaddress"] == ip and h["zoneid"] == z["id"] for h in self.hosts.values()):
                raise not_found
            if sum(1 for h in self.hosts.values() if h["clusterid"] == c["id"]) >= 16 and a["hypervisor"] == "KVM":
                raise ApiError(530, f"Cluster {c['name']} already has the maximum number of KVM hosts")
            hid = _uuid()
            # addHost answers once waitForHostConnect saw the agent Up (LibvirtServerDiscoverer)
            self.hosts[hid] = {"id": hid, "name": f"kvm-{ip.replace('.', '-')}", "ipaddress": ip,
                               "clusterid": c["id"], "clustername": c["name"], "podid": p["id"],
                               "podname": p["name"], "zoneid": z["id"], "zonename": z["name"], "hypervisor": "KVM",
                               "type": "Routing", "state": "Up", "resourcestate": "Enabled", "created": _now(),
                               "version": self.version,
                               "up_at": 0.0, "maintenance_at": 0.0, "username": a["username"]}
            self._agent_added(self.hosts[hid])
            return {"count": 1, "host": [self._host_view(self.hosts[hid])]}
        return Blocking(self.add_host_delay, finish)

    def _cmd_listHosts(self, a: dict) -> dict:
        return self._list("host", [self._host_view(h) for h in self.hosts.values() if self._match(
            h, a, "id", "zoneid", "podid", "clusterid", "type", "name", "state", "resourcestate")], a)

    def _cmd_updateHost(self, a: dict) -> dict:
        h = self._get(self.hosts, a["id"], "host")
        if "allocationstate" in a:
            # ResourceManagerImpl.updateHostAllocationState + ResourceState's transitions
            event = a["allocationstate"]
            if event not in ("Enable", "Disable"):
                raise ApiError(431, f"Invalid allocation state: {event}, only Enable/Disable are allowed")
            nxt = {("Enabled", "Disable"): "Disabled", ("Disabled", "Enable"): "Enabled",
                   ("Enabled", "Enable"): "Enabled", ("Disabled", "Disable"): "Disabled",
                   ("ErrorInMaintenance", "Disable"): "Disabled",
                   ("ErrorInPrepareForMaintenance", "Disable"): "Disabled"}.get((h["resourcestate"], event))
            if nxt is None:
                raise ApiError(530, f"No next resource state found for current state = {h['resourcestate']} "
                                    f"event = {event}")
            h["resourcestate"] = nxt
        return {"host": self._host_view(h)}

    def _vms_on(self, host_id: str) -> list[dict]:
        return [v for v in self.vms.values() if v["hostid"] == host_id]

    def _targets(self, h: dict) -> list[dict]:
        """ResourceManagerImpl.doMaintain: Up and Enabled hosts of the cluster; only when there is
        none, and migrate.vm.across.clusters is true, those of the zone."""
        def up(t: dict) -> bool:
            return t["id"] != h["id"] and t["state"] == "Up" and t["resourcestate"] == "Enabled" \
                and t["zoneid"] == h["zoneid"]
        same = [t for t in self.hosts.values() if up(t) and t["clusterid"] == h["clusterid"]]
        if same:
            return same
        if self.config.get("migrate.vm.across.clusters") == "true":
            return [t for t in self.hosts.values() if up(t)]
        return []

    def _cmd_prepareHostForMaintenance(self, a: dict) -> dict:
        h = self._get(self.hosts, a["id"], "host")

        def run() -> dict:
            # ResourceManagerImpl.maintain(PrepareForMaintenanceCmd), in the async job
            if h["resourcestate"] in ("Maintenance", "PrepareForMaintenance", "ErrorInPrepareForMaintenance"):
                raise ApiError(530, f"Host is already in state {h['resourcestate']}. Cannot recall for "
                                    f"maintenance until resolved.")
            if any(o["clusterid"] == h["clusterid"] and o["resourcestate"] in (
                    "PrepareForMaintenance", "ErrorInPrepareForMaintenance") for o in self.hosts.values()):
                raise ApiError(530, "There are other servers attempting migrations for maintenance. Found hosts "
                                    "in PrepareForMaintenance OR ErrorInPrepareForMaintenance STATUS in cluster "
                                    f"{h['clusterid']}")
            vms = self._vms_on(h["id"])
            if any(v["state"] in ("Starting", "Stopping") for v in vms):
                raise ApiError(530, "Host contains VMs in starting/stopping state. Please wait for them to complete "
                                    "before putting to maintenance.")
            if any(not v["migratable"] for v in vms):
                raise ApiError(530, "There are active VMs using the host's local storage pool. Please stop all VMs "
                                    "on this host that use local storage.")
            if h["state"] != "Up":
                # doMaintain: the MaintainCommand cannot reach the agent → maintain() is false
                raise ApiError(530, f"Unable to prepare for maintenance host {h['id']}")
            if h["resourcestate"] not in ("Enabled", "ErrorInMaintenance"):
                # ResourceState.java: no AdminAskMaintenance transition from Disabled. Degraded does have
                # one (straight to Maintenance) that this emulator does not model: the provider never
                # asks it (a Degraded host leaves through deleteHost), so it is refused here.
                raise ApiError(530, f"Cannot transit resource state of Host {h['id']} to Maintenance: No next "
                                    f"resource state found for current state = {h['resourcestate']} event = "
                                    f"AdminAskMaintenance")
            h["resourcestate"] = "PrepareForMaintenance"
            h["maintenance_at"] = time.monotonic() + self.maintenance_delay
            h["_migrations_scheduled"] = bool(self._targets(h))
            if vms and not self._targets(h):
                # doMaintain returns false after the transition: the job fails, the host stays in
                # PrepareForMaintenance, and attemptMaintain later moves it to ErrorInMaintenance.
                raise ApiError(530, f"Unable to prepare for maintenance host {h['id']}")
            return {"host": self._host_view(h)}
        return self._submit("prepareHostForMaintenance", run, ("Host", h["id"]))

    def _cmd_cancelHostMaintenance(self, a: dict) -> dict:
        h = self._get(self.hosts, a["id"], "host")

        def run() -> dict:
            # ResourceManagerImpl.cancelMaintenance: ResourceState.isMaintenanceState
            if h["resourcestate"] not in ("PrepareForMaintenance", "ErrorInPrepareForMaintenance",
                                          "ErrorInMaintenance", "Maintenance"):
                raise ApiError(530, f"Cannot perform cancelMaintenance when resource state is "
                                    f"{h['resourcestate']}, hostId = {h['id']}")
            h["resourcestate"] = "Enabled"
            return {"host": self._host_view(h)}
        return self._submit("cancelHostMaintenance", run, ("Host", h["id"]))

    def _cmd_declareHostAsDegraded(self, a: dict) -> dict:
        h = self._get(self.hosts, a["id"], "host")

        def run() -> dict:
            # ResourceManagerImpl.declareHostAsDegraded
            if h["resourcestate"] == "Degraded":
                raise ApiError(530, f"Host [id:{h['id']}] was already marked as Degraded.")
            if h["state"] not in ("Alert", "Disconnected"):
                raise ApiError(431, f"Cannot perform declare host [id={h['id']}, name={h['name']}] as 'Degraded' "
                                    f"when host is in {h['state']} status")
            if h["resourcestate"] not in ("Enabled", "Disabled", "Maintenance"):
                raise ApiError(530, f"No next resource state found for current state = {h['resourcestate']} "
                                    f"event = DeclareHostDegraded")
            h["resourcestate"] = "Degraded"
            # scheduleVmsRestart: HA restarts the HA-enabled VMs on another host
            for vm in self._vms_on(h["id"]):
                targets = self._targets(h)
                if vm.get("ha") and targets:
                    vm["hostid"] = targets[0]["id"]
            return {"host": self._host_view(h)}
        return self._submit("declareHostAsDegraded", run, ("Host", h["id"]))

    def _cmd_cancelHostAsDegraded(self, a: dict) -> dict:
        h = self._get(self.hosts, a["id"], "host")

        def run() -> dict:
            if h["resourcestate"] != "Degraded":
                raise ApiError(530, f"Cannot perform cancelHostAsDegraded on host [id={h['id']}, name={h['name']}] "
                                    f"when host is in {h['resourcestate']} state")
            h["resourcestate"] = "Enabled"
            return {"host": self._host_view(h)}
        return self._submit("cancelHostAsDegraded", run, ("Host", h["id"]))

    def _cmd_deleteHost(self, a: dict) -> dict:
        h = self._get(self.hosts, a["id"], "host")
        forced = a.get("forced") == "true"
        # ResourceManagerImpl.doDeleteHost / canDeleteHost
        if not forced and h["resourcestate"] not in ("Maintenance", "Degraded"):
            raise ApiError(530, f"Host {h['id']} cannot be deleted as it is not in maintenance mode. Either put the "
                                f"host into maintenance or perform a forced deletion.")
        for vm in self._vms_on(h["id"]):
            # doDeleteHost marks every VM still on the host Stopped
            if vm["state"] == "Running":
                self.lost_vms.append(vm["name"])
            vm["state"], vm["hostid"] = "Stopped", None
        del self.hosts[h["id"]]
        return {"success": True}

    def _vm_items(self, a: dict, types: tuple[str, ...]) -> list[dict]:
        items = []
        for v in self.vms.values():
            if v["type"] in types and self._match(v, a, "id", "hostid", "name"):
                host = self.hosts.get(v["hostid"] or "", {})
                items.append(self._tmpl("virtualmachine", id=v["id"], name=v["name"], displayname=v["name"],
                                        hostid=v["hostid"], hostname=host.get("name"), state=v["state"],
                                        zoneid=host.get("zoneid"), hypervisor="KVM", haenable=bool(v.get("ha")),
                                        systemvmtype={"SecondaryStorageVm": "secondarystoragevm",
                                                      "ConsoleProxy": "consoleproxy"}.get(v["type"])))
        return items

    def _cmd_listVirtualMachines(self, a: dict) -> dict:
        return self._list("virtualmachine", self._vm_items(a, ("User",)), a)

    def _cmd_listRouters(self, a: dict) -> dict:
        # DomainRouterResponse names the router's network `guestnetworkid` and its VPC `vpcid`.
        # `version` and `requiresupgrade` as RouterJoinDaoImpl.newDomainRouterResponse fills them:
        # the router's template version, older than minreq.sysvmtemplate.version (which
        # SystemVmTemplateRegistration sets to the template it registers on an upgrade), or
        # unknown, requires an upgrade.
        items = self._vm_items(a, ("DomainRouter",))
        for item in items:
            v = self.vms[item["id"]]
            item.update({k: v[k] for k in ("guestnetworkid", "vpcid") if v.get(k)})
            version = v.get("template")
            item.update(version=version or "UNKNOWN", requiresupgrade=version is None or tuple(
                map(int, version.split("."))) < tuple(map(int, self.system_template_version.split("."))))
        return self._list("router", items, a)

    def _restart_routers(self, command: str, key: str, a: dict) -> dict:
        """restartNetwork / restartVPC (NetworkServiceImpl.restartNetwork, VpcManagerImpl.restartVpc):
        with cleanup=true the routers are destroyed and new ones deployed (on the current system
        VM template); the network's guests keep running."""
        routers = [v for v in self.vms.values() if v["type"] == "DomainRouter" and v.get(key) == a["id"]]
        if not routers:
            raise ApiError(431, f"Unable to execute API command {command.lower()} due to invalid value. Invalid "
                                f"parameter id value={a['id']} due to incorrect long value format, or entity "
                                f"does not exist")

        def run() -> dict:
            if a.get("cleanup") == "true":
                for old in routers:
                    self.vms.pop(old["id"], None)
                    new = self.add_vm(old["hostid"], old["name"], type="DomainRouter")
                    self.vms[new].update({key: a["id"], "template": self.system_template_version})
            return {"success": True}

        return self._submit(command, run)

    def _cmd_restartNetwork(self, a: dict) -> dict:
        return self._restart_routers("restartNetwork", "guestnetworkid", a)

    def _cmd_restartVPC(self, a: dict) -> dict:
        return self._restart_routers("restartVPC", "vpcid", a)

    def _system_vm_view(self, v: dict) -> dict:
        """SystemVmResponse (api/.../response/SystemVmResponse.java, SerializedName of each field) as
        ApiResponseHelper.createSystemVmResponse fills it: zone DNS, then each NIC by traffic type
        (Management → private*, Control → linklocal*, Public → public*, gateway). Fields without a
        value are left out, as the JSON serializer does with nulls."""
        host = self.hosts.get(v["hostid"] or "", {})
        zid = v.get("_zoneid") or host.get("zoneid")
        z = self.zones.get(zid or "", {})
        pod = self.pods.get(v.get("_podid") or "", {}) or self.pods.get(
            self.clusters.get(host.get("clusterid") or "", {}).get("podid") or "", {})
        out = {"id": v["id"], "name": v["name"], "systemvmtype": {"SecondaryStorageVm": "secondarystoragevm",
                                                                   "ConsoleProxy": "consoleproxy"}[v["type"]],
               "state": v["state"], "zoneid": zid, "zonename": z.get("name"), "dns1": z.get("dns1"),
               "dns2": z.get("dns2"), "podid": pod.get("id"), "podname": pod.get("name"), "hostid": v["hostid"],
               "hostname": host.get("name"), "hypervisor": "KVM", "created": v.get("created"),
               "agentstate": "Up" if v["state"] == "Running" else None,
               "activeviewersessions": 0 if v["type"] == "ConsoleProxy" else None,
               # ApiResponseHelper.createSystemVmResponse: the VM's template (as listTemplates names it)
               "templatename": f"systemvm-kvm-{v['template']}" if v.get("template") else None}
        for k in ("publicip", "publicnetmask", "publicmacaddress", "gateway", "publicvlan", "privateip",
                  "privatenetmask", "privatemacaddress", "linklocalip", "linklocalnetmask", "linklocalmacaddress"):
            out[k] = v.get(k)
        return {k: val for k, val in out.items() if val is not None}

    def _cmd_listSystemVms(self, a: dict) -> dict:
        kinds = {"secondarystoragevm": ("SecondaryStorageVm",), "consoleproxy": ("ConsoleProxy",)}
        types = kinds.get(a.get("systemvmtype", ""), SYSTEM_VM_TYPES)
        items = [self._system_vm_view(v) for v in self.vms.values() if v["type"] in types]
        items = [i for i in items if self._match(i, a, "id", "hostid", "name", "zoneid", "podid", "state")]
        return self._list("systemvm", items, a)

    # -- state of the zone (what `cloudstack-ec2 status` reads) ------------------------------------
    # listManagementServers: the management servers' model (management_cluster.ManagementCluster).

    def _cmd_listAlerts(self, a: dict) -> dict:
        items = [dict(x) for x in self.alerts if self._match(x, a, "id", "name", "type")]
        return self._list("alert", items, a)

    def _capacities(self, z: dict) -> list[dict]:
        """CapacityResponse rows of zone `z` (Capacity.java types: 0 memory, 1 CPU, 4 public IPs):
        the hosts that are Up (a host's capacity stops counting once it is not: CapacityManagerImpl),
        their cpunumber x cpuspeed and memorytotal as listHosts shows them, used as tests set it
        (host["_cpuused"], host["_memoryused"]: the emulator's VMs have no size); every address of
        the zone's VirtualNetwork ranges, used: the ones system VMs or others hold."""
        up = [self._host_view(h) | {"_used": (h.get("_cpuused", 0), h.get("_memoryused", 0))}
              for h in self.hosts.values() if h["zoneid"] == z["id"] and h["state"] == "Up"]
        ranges = [r for r in self.vlans.values() if r["zoneid"] == z["id"] and r["forvirtualnetwork"]]
        addresses = {str(ipaddress.IPv4Address(i)) for r in ranges for i in range(
            int(ipaddress.IPv4Address(r["startip"])), int(ipaddress.IPv4Address(r["endip"])) + 1)}
        held = ({x.get("publicip") for x in self.vms.values()} | set(self.held_public_ips)) & addresses
        rows = [(0, "MEMORY", sum(h["_used"][1] for h in up), sum(h["memorytotal"] for h in up)),
                (1, "CPU", sum(h["_used"][0] for h in up), sum(h["cpunumber"] * h["cpuspeed"] for h in up)),
                (4, "VIRTUAL_NETWORK_PUBLIC_IP", len(held), len(addresses))]
        return [{"type": t, "name": n, "zoneid": z["id"], "zonename": z["name"], "capacityused": used,
                 "capacitytotal": total, "percentused": f"{100 * used / total:.2f}" if total else "0"}
                for t, n, used, total in rows]

    def _cmd_listCapacity(self, a: dict) -> dict:
        items = [row for z in self.zones.values() if a.get("zoneid") in (None, z["id"]) for row in self._capacities(z)]
        items = [i for i in items if self._match(i, a, "type")]
        return self._list("capacity", items, a)

    # -- storage --------------------------------------------------------------------------------
    def _cmd_createStoragePool(self, a: dict) -> dict:
        z = self._zone(a["zoneid"])
        url = urlsplit(a["url"])
        scope = a.get("scope", "cluster").upper()
        # Checked on the parsed URL's scheme, before this emulator's NFS-only limit.
        details = {k.split(".", 1)[1]: v for k, v in a.items() if k.startswith("details[") and "." in k}
        mount_opts = self._nfs_mount_options(details, a, scope, url.scheme)
        if url.scheme != "nfs" or not url.hostname or not url.path:
            raise ApiError(431, f"Invalid url {a['url']}: expected nfs://<server>/<path>")
        if scope == "ZONE" and not a.get("hypervisor"):
            raise ApiError(431, "hypervisor type must be specified for a zone wide primary storage")
        if scope == "CLUSTER" and not a.get("clusterid"):
            raise ApiError(431, "clusterid must be specified for a cluster wide primary storage")
        up = [h for h in self.hosts.values() if h["zoneid"] == z["id"] and h["state"] == "Up"
              and (scope == "ZONE" or h["clusterid"] == a.get("clusterid"))]
        if not up:
            raise ApiError(530, f"No host up to associate a storage pool with in zone {z['name']}")
        sid = _uuid()
        self.pools[sid] = self._tmpl("storagepool", id=sid, name=a["name"], zoneid=z["id"], zonename=z["name"],
                                     ipaddress=url.hostname, path=url.path, scope=scope, state="Up",
                                     hypervisor=a.get("hypervisor"), podid=None, podname=None, clusterid=None,
                                     clustername=None, created=_now(),
                                     overprovisionfactor=self.config["storage.overprovisioning.factor"],
                                     _volumes=0)
        if mount_opts is not None:
            self.pools[sid]["nfsmountopts"] = mount_opts   # StoragePoolResponse.nfsmountopts (4.20+)
        return {"storagepool": self._public(self.pools[sid])}

    def _nfs_mount_options(self, details: dict, a: dict, scope: str, scheme: str) -> str | None:
        """The pool detail `nfsmountopts` as StorageManagerImpl.checkNFSMountOptionsForCreate
        (apache/cloudstack, PR #8947, 4.20+; messages from StorageManagerImplTest) takes it:
        KVM only, NFS pools only; whitespace dropped; options split on ','; an option
        with more than one '=' or a key given twice is refused. The options themselves
        go to libvirt's <fs:mount_opts> (LibvirtStoragePoolDef): the host's mount, not
        CloudStack, judges them."""
        if "nfsmountopts" not in details:
            return None
        hypervisor = a.get("hypervisor") if scope == "ZONE" else \
            self.clusters.get(a.get("clusterid"), {}).get("hypervisortype")
        if str(hypervisor).lower() != "kvm":
            raise ApiError(431, f"NFS options can not be set for the hypervisor type {hypervisor}")
        if scheme != "nfs":
            raise ApiError(431, "NFS options can only be set on pool type NetworkFilesystem")
        text = re.sub(r"\s", "", details["nfsmountopts"])
        options = text.split(",")
        while options and not options[-1]:
            options.pop()  # Java's String.split drops trailing empty strings
        keys = []
        for option in options:  # an empty one in the middle: refused here (not verified against the source)
            if option.count("=") > 1 or not option:
                raise ApiError(431, f"Invalid NFS mount option {option!r} in {details['nfsmountopts']!r}")
            keys.append(option.split("=", 1)[0])
        if len(set(keys)) != len(keys):
            raise ApiError(431, f"Duplicate NFS mount options in {details['nfsmountopts']!r}")
        return text

    def _cmd_listStoragePools(self, a: dict) -> dict:
        return self._list("storagepool", [self._public(p) for p in self.pools.values()
                                          if self._match(p, a, "id", "zoneid", "name")], a)

    def _cmd_updateStoragePool(self, a: dict) -> dict:
        p = self._get(self.pools, a["id"], "storage pool")
        if "name" in a:
            p["name"] = a["name"]
        return {"storagepool": self._public(p)}

    def _cmd_deleteStoragePool(self, a: dict) -> dict:
        p = self._get(self.pools, a["id"], "storage pool")
        if p["_volumes"] and a.get("forced") != "true":
            raise ApiError(530, f"Cannot delete pool {p['name']} as there are associated volumes")
        del self.pools[p["id"]]
        return {"success": True}

    def _cmd_addImageStore(self, a: dict) -> dict | Blocking:
        if a["provider"] != "NFS":
            raise ApiError(431, f"The emulator supports the NFS image store provider only, not {a['provider']}")
        z = self._zone(a.get("zoneid", ""))
        if not a.get("url", "").startswith("nfs://"):
            raise ApiError(431, f"Invalid url {a.get('url')}")
        if not any(s["zoneid"] == z["id"] for s in self.imagestores.values()):
            # The first NFS store of a zone gets the system VM template, for the hypervisors
            # of the clusters that exist at that moment.
            self.template_ready_at[z["id"]] = time.monotonic() + self.template_delay
            self.system_templates[z["id"]] = {c["hypervisortype"] for c in self.clusters.values()
                                              if c["zoneid"] == z["id"]}
        sid = _uuid()
        self.imagestores[sid] = self._tmpl("imagestore", id=sid, name=a.get("name", a["url"]), url=a["url"],
                                           zoneid=z["id"], zonename=z["name"], protocol="nfs", providername="NFS")
        if self.add_image_store_delay:
            # the store is listed at once, the answer comes once the template is seeded
            # (SystemVmTemplateRegistration runs inside the call)
            return Blocking(self.add_image_store_delay, lambda: {"imagestore": self.imagestores[sid]})
        return {"imagestore": self.imagestores[sid]}

    def _cmd_listTemplates(self, a: dict) -> dict:
        # Only the system VM templates (templatetype SYSTEM) are emulated; `isready` turns true
        # once the template is seeded into the zone's image store.
        items = []
        now = time.monotonic()
        for zid, hvs in self.system_templates.items():
            for hv in sorted(hvs):
                ready = self.template_ready_at.get(zid, float("inf")) <= now
                t = {"id": f"tmpl-{zid[:8]}-{hv}-{self.system_template_version}",
                     "name": f"systemvm-{hv.lower()}-{self.system_template_version}", "hypervisor": hv,
                     "templatetype": "SYSTEM", "zoneid": zid, "isready": ready,
                     "status": "Download Complete" if ready else "Installing Template"}
                if self._match(t, a, "zoneid", "hypervisor", "templatetype"):
                    items.append(t)
        return self._list("template", items, a)

    def _cmd_destroySystemVm(self, a: dict) -> dict:
        v = self._get(self.vms, a["id"], "system vm")
        if v["type"] not in ("SecondaryStorageVm", "ConsoleProxy"):
            raise ApiError(431, f"Unable to find a system vm with id {a['id']}")

        def run() -> dict:
            # expunged with its NICs: its public address is Free again (PublicNetworkGuru.deallocate)
            self.vms.pop(v["id"], None)
            return {"systemvm": {"id": v["id"], "name": v["name"], "state": "Destroyed"}}
        return self._submit("destroySystemVm", run, ("SystemVm", v["id"]))

    def _cmd_listImageStores(self, a: dict) -> dict:
        return self._list("imagestore", [s for s in self.imagestores.values()
                                         if self._match(s, a, "id", "zoneid", "name")], a)

    def _cmd_deleteImageStore(self, a: dict) -> dict:
        self._get(self.imagestores, a["id"], "image store")
        del self.imagestores[a["id"]]
        return {"success": True}
