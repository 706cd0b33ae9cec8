"""VM consoles from outside the overlay: the facts and the forwards (pure; no Pulumi).

How a browser reaches a VM's console (read in apache/cloudstack; docs/consoles.md):

- The UI asks the management server for a console URL (createConsoleEndpoint /
  ConsoleAccessManagerImpl.generateConsoleAccessUrl): `http://<host>/resource/noVNC/vnc.html
  ?autoconnect=true&port=<websocket port>&token=...`. noVNC then opens its websocket to the
  page's host on that port.
- `<host>` and the page's port come from ConsoleProxyManagerImpl.assignProxy. Normally they
  are the console proxy VM's public IP (an overlay address of the public range, which no
  browser outside the overlay reaches) and the proxy's URL port (doAssignProxy: 443 with
  `consoleproxy.sslEnabled`, else 80). With **`consoleproxy.static.publicIp`** set, they are that
  address and **`consoleproxy.static.port`** (default 8443): CloudStack's own settings for a
  console proxy behind NAT. ConsoleProxyInfo leaves port 80 (http) out of the URL.
- The websocket port is ConsoleProxyManagerImpl.getVncPort: 8443 with SSL and a CPVM
  certificate, else 8080 (releases with the `novnc.console.port` setting: its value,
  default 8080; marvin test_console_endpoint_change_websocket_traffic).
- Both static settings are read when the management server starts
  (ConsoleProxyManagerImpl.configure, `configDao.getValue`), and neither has a Config or
  ConfigKey entry: no configuration row exists until one is written, and updateConfiguration
  refuses them. So the management server's boot writes the two rows into
  `cloud.configuration` before its settings restart.
- Not `consoleproxy.url.domain`: whenever it is non-empty,
  AgentHookBase.startAgentHttpHandlerInVM loads the `CPVMCertificate` keystore
  (KeystoreManagerImpl.getKeystoreBits throws when none was uploaded; the exception is only
  logged), and the console proxy's HTTP and noVNC servers never start. Where it is a Config
  entry with range "domainName", updateConfiguration also refuses an IPv4 value
  (ConfigurationManagerImpl.validateConfigurationValue).

So the page (80) and the websocket (8080) need an address of their own: on the router's
Elastic IP, 8080 is the UI. The router gets a second private address with a second Elastic
IP, the *console address*; `consoleproxy.static.publicIp` names it, and the router forwards
its ports 80 and 8080 to the console proxy VM's public IP. That IP is CloudStack's choice,
made in the system VMs' public range (registered with `forsystemvms`, so a tenant never gets
one of its addresses) and a new one when the VM is recreated. So the registration publishes
it (SSM parameter `<root>/console-forwards`) and the router applies it like the forwards to
VMs. Plain HTTP, as the UI on 8080: a console with TLS (sslEnabled, a certificate, a DNS
name) is not set up here.
"""

from __future__ import annotations

import ipaddress
import re

#: The console proxy's page port without SSL (ConsoleProxyManagerImpl.doAssignProxy).
CONSOLE_PAGE_PORT = 80
#: noVNC's websocket port without SSL (ConsoleProxyManagerImpl.getVncPort; novnc.console.port's default).
CONSOLE_WEBSOCKET_PORT = 8080
#: What the router forwards on the console address, in this order.
CONSOLE_PORTS = (CONSOLE_PAGE_PORT, CONSOLE_WEBSOCKET_PORT)
#: The host of console URLs for a proxy behind NAT (ConsoleProxyManagerImpl.assignProxy):
#: the console Elastic IP, written by the management server's boot.
STATIC_ADDRESS_SETTING = "consoleproxy.static.publicIp"
#: The page's port in console URLs with STATIC_ADDRESS_SETTING (default 8443): 80.
STATIC_PORT_SETTING = "consoleproxy.static.port"
#: Left as CloudStack has it (blank): non-empty, it needs an uploaded CPVM certificate.
URL_DOMAIN_SETTING = "consoleproxy.url.domain"
#: The setting of the websocket port, in releases that have it (absent: 8080 fixed).
WEBSOCKET_PORT_SETTING = "novnc.console.port"
#: SSL for consoles: not set up here (it moves both ports, and needs a certificate and a name).
SSL_SETTING = "consoleproxy.sslEnabled"
#: The value of the console-forwards parameter while no console proxy address is known.
NO_CONSOLE = "none"

_ENTRY = re.compile(r"^tcp:([0-9]{1,5}):([0-9.]+):([0-9]{1,5})$")


def console_forwards(proxy_public_ip: str) -> str:
    """The router's console forwards to a console proxy VM at `proxy_public_ip`, as the
    SSM parameter holds them: "tcp:80:<ip>:80 tcp:8080:<ip>:8080" (overlay-router.sh
    CONSOLE_FORWARDS). Raises ValueError when `proxy_public_ip` is not an IPv4 address."""
    ip = ipaddress.IPv4Address(proxy_public_ip)
    return " ".join(f"tcp:{port}:{ip}:{port}" for port in CONSOLE_PORTS)


def forwarded_proxy(value: str) -> str | None:
    """The console proxy address a console-forwards value forwards to; None for NO_CONSOLE.
    Raises ValueError on anything console_forwards would not have written."""
    if value == NO_CONSOLE:
        return None
    entries = value.split(" ")
    targets = set()
    ports = []
    for entry in entries:
        m = _ENTRY.match(entry)
        if not m or m.group(1) != m.group(3):
            raise ValueError(f"console forwards {value!r}: entry {entry!r} is not tcp:<port>:<ip>:<port>")
        ports.append(int(m.group(1)))
        targets.add(str(ipaddress.IPv4Address(m.group(2))))
    if tuple(ports) != CONSOLE_PORTS or len(targets) != 1:
        raise ValueError(f"console forwards {value!r}: expected the ports {CONSOLE_PORTS} to one address, "
                         f"as console_forwards writes them")
    return targets.pop()
