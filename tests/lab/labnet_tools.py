"""Tiny servers and clients the lab runs inside its namespaces (stdlib only).

Run as a script: `python labnet_tools.py <mode> ...`. Servers print READY once
listening, then one line per event, flushed, so the lab can follow them.

  whoami NAME ADDR PORT [sniff]  TCP: greets "NAME <peer ip>", then echoes lines;
                                 "BULK U D": reads U bytes, answers "GOT U <sha256>"
                                 and sends D pattern bytes. With sniff: prints
                                 "syn <source ip> mss <n>" for every SYN to PORT
  page NAME ADDR PORT PATH       HTTP: GET PATH answers 200 with a page naming NAME
                                 and the peer ("NAME <peer ip>"), anything else 404
  dns VPC_CIDR ADDR PORT N=IP..  UDP DNS resolver that, like the VPC resolver,
                                 answers only sources inside VPC_CIDR, and at most
                                 DNS_PACKETS_PER_SECOND packets a second from one
                                 source (a network interface); prints
                                 "query <source ip> <name>" for every query
  tcp ADDR PORT TIMEOUT          client: prints the greeting (exit 1 on failure)
  get ADDR PORT PATH TIMEOUT     HTTP client: prints the status code and the body's
                                 "NAME <peer ip>" line (exit 1 unless 200)
  hold ADDR PORT SECONDS         client: keeps one connection, one echo every
                                 0.05 s; exit 0 only if every echo came back
  resolve SERVER NAME TIMEOUT [SOURCE]  client: prints the A record or exits 1
  flood SERVER NAME SECONDS RATE  client: prints READY, then sends RATE DNS queries a
                                 second for SECONDS from one socket, never reading;
                                 prints "sent <n>"
  bulk ADDR PORT UP DOWN TIMEOUT  client: greeting, then UP bytes up and DOWN
                                 bytes down on one connection; prints the
                                 greeting and "synack mss <n>" (the MSS option
                                 of the SYN-ACK it received); exit 1 on failure
  tagged DEV VLAN PAYLOAD        sends one 802.1Q-tagged Ethernet frame (VLAN id,
                                 PAYLOAD bytes after the tag: a guest packet of
                                 that MTU) to an unknown MAC out of DEV, so a
                                 bridge floods it; prints the frame's length
  udp ADDR PORT                  UDP listener: prints "udp <source ip>" for every
                                 datagram
  send-udp ADDR PORT [SOURCE]    client: one datagram ("probe"), from SOURCE if given
  garp DEV IP [MAC]              one gratuitous ARP out of DEV: "IP is at MAC" (DEV's
                                 by default; also the frame's source), a request
                                 with sender = target = IP, broadcast
  ra DEV PREFIX                  one Router Advertisement (router lifetime 1800 s,
                                 PREFIX/64 for autoconfiguration) to ff02::1 on DEV
  vxlan ADDR PORT VNI DST_MAC SRC DST DPORT [OUTER_SOURCE]
                                 one VXLAN datagram to ADDR:PORT (from OUTER_SOURCE
                                 if given) carrying an Ethernet frame to DST_MAC
                                 with an IPv4/UDP packet SRC -> DST:DPORT ("injected")
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import ipaddress
import json
import socket
import socketserver
import struct
import sys
import threading
import time


def pattern(size: int) -> bytes:
    # 251 is prime: a shifted or truncated stream does not match by accident.
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def tcp_syn_mss(packet: bytes) -> tuple[str, int, int, int, int | None]:
    """(source ip, source port, destination port, flags, MSS option or None)
    of an IPv4 TCP packet as a raw socket delivers it."""
    ihl = (packet[0] & 0x0F) * 4
    source = socket.inet_ntoa(packet[12:16])
    sport, dport = struct.unpack("!HH", packet[ihl : ihl + 4])
    offset = (packet[ihl + 12] >> 4) * 4
    flags = packet[ihl + 13]
    options = packet[ihl + 20 : ihl + offset]
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            break
        if kind == 2 and options[i + 1] == 4:
            return source, sport, dport, flags, struct.unpack("!H", options[i + 2 : i + 4])[0]
        i += options[i + 1]
    return source, sport, dport, flags, None


SYN, ACK = 0x02, 0x10


def raw_tcp_socket() -> socket.socket:
    # A raw IPPROTO_TCP socket gets a copy of every TCP packet this namespace receives.
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)


def sniff_syns(sock: socket.socket, port: int) -> None:
    while True:
        packet = sock.recv(65535)
        try:
            source, _, dport, flags, mss = tcp_syn_mss(packet)
        except (IndexError, struct.error):
            continue
        if dport == port and flags & (SYN | ACK) == SYN:
            print(f"syn {source} mss {mss}", flush=True)


def serve_whoami(name: str, addr: str, port: int, sniff: bool = False) -> None:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(f"{name} {self.client_address[0]}\n".encode())
            self.wfile.flush()
            for line in self.rfile:
                if line.startswith(b"BULK "):
                    up, down = (int(n) for n in line.split()[1:3])
                    data = self.rfile.read(up)
                    self.wfile.write(f"GOT {len(data)} {hashlib.sha256(data).hexdigest()}\n".encode())
                    self.wfile.write(pattern(down))
                else:
                    self.wfile.write(line)
                self.wfile.flush()

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
        # "::" (or any IPv6 address): an IPv6 listener, as sshd's [::]:22.
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

    if sniff:
        threading.Thread(target=sniff_syns, args=(raw_tcp_socket(), port), daemon=True).start()
    with Server((addr, port), Handler) as server:
        print("READY", flush=True)
        server.serve_forever()


PAGE_MARK = "whoami: "


def serve_page(name: str, addr: str, port: int, path: str) -> None:
    """A web page at `path` (like the console proxy's noVNC page), naming the server and the peer."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            found = self.path.split("?", 1)[0] == path
            body = (f"<!DOCTYPE html><html><head><title>{name}</title></head><body>\n"
                    f"{PAGE_MARK}{name} {self.client_address[0]}\n</body></html>\n" if found else "not found\n")
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True

    with Server((addr, port), Handler) as server:
        print("READY", flush=True)
        server.serve_forever()


def client_get(addr: str, port: int, path: str, timeout: float) -> int:
    try:
        connection = http.client.HTTPConnection(addr, port, timeout=timeout)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        connection.close()
    except (OSError, http.client.HTTPException) as error:
        print(f"get {addr}:{port}{path} failed: {error!r}", file=sys.stderr)
        return 1
    marks = [line[len(PAGE_MARK):] for line in body.splitlines() if line.startswith(PAGE_MARK)]
    print(response.status, *marks[:1])
    return 0 if response.status == 200 else 1


def _parse_qname(packet: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while True:
        length = packet[offset]
        offset += 1
        if length == 0:
            return ".".join(labels).lower(), offset
        labels.append(packet[offset : offset + length].decode("ascii", "replace"))
        offset += length


#: The VPC resolver's limit: "Each EC2 instance limits the number of packets that can be
#: sent to the Amazon DNS server to a maximum of 1024 packets per second per network
#: interface" (Amazon VPC User Guide, "Amazon DNS server", DNS quotas). Packets over it
#: are dropped, never answered.
DNS_PACKETS_PER_SECOND = 1024


class TokenBucket:
    """`rate` tokens a second, at most `rate` saved up: take() is False when none is left."""

    def __init__(self, rate: float) -> None:
        self.rate, self.tokens, self.at = rate, rate, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def serve_dns(vpc_cidr: str, addr: str, port: int, records: dict[str, str]) -> None:
    vpc = ipaddress.ip_network(vpc_cidr)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, port))
    buckets: dict[str, TokenBucket] = {}
    print("READY", flush=True)
    while True:
        packet, (source, source_port) = sock.recvfrom(4096)
        if not buckets.setdefault(source, TokenBucket(DNS_PACKETS_PER_SECOND)).take():
            continue
        try:
            (query_id,) = struct.unpack("!H", packet[:2])
            name, end = _parse_qname(packet, 12)
        except (IndexError, struct.error):
            continue
        print(f"query {source} {name}", flush=True)
        if ipaddress.ip_address(source) not in vpc:
            continue  # the VPC resolver stays silent for non-VPC sources
        question = packet[12 : end + 4]
        answer_ip = records.get(name)
        if answer_ip is None:
            header = struct.pack("!HHHHHH", query_id, 0x8183, 1, 0, 0, 0)  # NXDOMAIN
            sock.sendto(header + question, (source, source_port))
            continue
        header = struct.pack("!HHHHHH", query_id, 0x8180, 1, 1, 0, 0)
        answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(answer_ip)
        sock.sendto(header + question + answer, (source, source_port))


def client_tcp(addr: str, port: int, timeout: float) -> int:
    try:
        with socket.create_connection((addr, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
    except OSError as error:
        print(f"connect {addr}:{port} failed: {error}", file=sys.stderr)
        return 1
    print(data.decode().strip())
    return 0 if data else 1


def client_hold(addr: str, port: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    with socket.create_connection((addr, port), timeout=2) as sock:
        sock.settimeout(2)
        reader = sock.makefile("rb")
        print(reader.readline().decode().strip(), flush=True)
        count = 0
        while time.monotonic() < deadline:
            message = f"ping {count}\n".encode()
            sock.sendall(message)
            if reader.readline() != message:
                print(f"echo {count} lost", file=sys.stderr)
                return 1
            count += 1
            time.sleep(0.05)
    print(f"echoes {count}", flush=True)
    return 0


def client_bulk(addr: str, port: int, up: int, down: int, timeout: float) -> int:
    """Moves `up` bytes to the server and `down` bytes back on ONE connection
    and checks both. Bounded: every socket operation times out after `timeout`."""
    payload = pattern(up)
    sniffer = raw_tcp_socket()
    sniffer.settimeout(timeout)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.bind(("0.0.0.0", 0))
            local_port = sock.getsockname()[1]
            sock.connect((addr, port))
            # The SYN-ACK is already in the sniffer's queue: connect() returned.
            synack_mss = None
            for _ in range(1000):
                source, sport, dport, flags, mss = tcp_syn_mss(sniffer.recv(65535))
                if dport == local_port and sport == port and flags & (SYN | ACK) == SYN | ACK:
                    synack_mss = mss
                    break
            reader = sock.makefile("rb")
            greeting = reader.readline().decode().strip()
            print(greeting, flush=True)
            print(f"synack mss {synack_mss}", flush=True)
            sock.sendall(f"BULK {up} {down}\n".encode() + payload)
            got = reader.readline().decode().split()
            if got != ["GOT", str(up), hashlib.sha256(payload).hexdigest()]:
                print(f"upload of {up} bytes not confirmed: {got}", file=sys.stderr)
                return 1
            data = reader.read(down)
            if data != pattern(down):
                print(f"download: {len(data)} of {down} bytes, intact: {data == pattern(down)[:len(data)]}",
                      file=sys.stderr)
                return 1
    except OSError as error:
        print(f"bulk {addr}:{port} failed: {error!r}", file=sys.stderr)
        return 1
    finally:
        sniffer.close()
    print(f"up {up} down {down} ok", flush=True)
    return 0


def client_resolve(server: str, name: str, timeout: float, source: str = "0.0.0.0") -> int:
    query_id = 0x4C41
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    query = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.sendto(query, (server, 53))
        try:
            reply, _ = sock.recvfrom(4096)
        except socket.timeout:
            print(f"no answer from {server} within {timeout}s", file=sys.stderr)
            return 1
    rid, flags, _, ancount, _, _ = struct.unpack("!HHHHHH", reply[:12])
    if rid != query_id or flags & 0xF or ancount < 1:
        print(f"bad answer: flags {flags:#x}, {ancount} answers", file=sys.stderr)
        return 1
    print(socket.inet_ntoa(reply[-4:]))
    return 0


def client_flood(server: str, name: str, seconds: float, rate: int) -> int:
    """RATE queries a second (in batches every millisecond: a steady stream, no gaps for
    others' queries to slip through) for SECONDS, answers never read."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    sent, start = 0, time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        print("READY", flush=True)
        while (elapsed := time.monotonic() - start) < seconds:
            while sent < elapsed * rate:
                query = struct.pack("!HHHHHH", sent & 0xFFFF, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
                try:
                    sock.sendto(query, (server, 53))
                except OSError:
                    pass  # dropped on the way out (the router's budget answers nothing)
                sent += 1
            time.sleep(0.001)
    print(f"sent {sent}", flush=True)
    return 0


def send_tagged(dev: str, vlan: int, payload: int) -> int:
    """One tagged frame as a guest's VLAN device hands it to the agent's bridge."""
    with open(f"/sys/class/net/{dev}/address") as f:
        source = bytes.fromhex(f.read().strip().replace(":", ""))
    unknown = bytes.fromhex("02005eee0001")  # locally administered, never learnt: flooded
    frame = unknown + source + struct.pack("!HH", 0x8100, vlan) + struct.pack("!H", 0x0800) + pattern(payload)
    # 0x0800 after the tag and a payload of `payload` bytes: dst 6 + src 6 + tag 4
    # + type 2 + payload. The payload is not a valid IPv4 packet; nobody parses it.
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((dev, 0))
        s.send(frame)
    print(len(frame))
    return 0


def serve_udp(addr: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((addr, port))
        print("READY", flush=True)
        while True:
            _, peer = sock.recvfrom(2048)
            print(f"udp {peer[0]}", flush=True)


def send_udp(addr: str, port: int, source: str = "0.0.0.0") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.sendto(b"probe", (addr, port))
    return 0


def dev_mac(dev: str) -> bytes:
    with open(f"/sys/class/net/{dev}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def send_garp(dev: str, ip: str, mac_text: str = "") -> int:
    """RFC 5227 section 3 "ARP Announcement": a request whose sender and target IP
    are both the claimed address; Linux updates an existing neighbour entry from it."""
    mac = bytes.fromhex(mac_text.replace(":", "")) if mac_text else dev_mac(dev)
    addr = socket.inet_aton(ip)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + addr + bytes(6) + addr
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((dev, 0))
        s.send(b"\xff" * 6 + mac + struct.pack("!H", 0x0806) + arp)
    return 0


def send_ra(dev: str, prefix: str) -> int:
    """RFC 4861 section 4.2: type 134, hop limit 255, from the link-local address;
    a Prefix Information option (L and A set) for SLAAC. The kernel fills the checksum."""
    net = ipaddress.IPv6Network(f"{prefix}/64")
    ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
    ra += struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0) + net.network_address.packed
    index = socket.if_nametoindex(dev)
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        s.sendto(ra, ("ff02::1", 0, 0, index))
    return 0


def ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total & 0xFFFF) + (total >> 16)
    return ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF


def send_vxlan(addr: str, port: int, vni: int, dst_mac: str, src: str, dst: str, dport: int,
               outer_source: str = "0.0.0.0") -> int:
    """RFC 7348 section 5: flags 0x08 (VNI valid), the VNI, then the inner frame."""
    payload = b"injected"
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", ipv4_checksum(header)) + header[12:]
    frame = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex("02005eee0002") + struct.pack("!H", 0x0800)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((outer_source, 0))
        sock.sendto(struct.pack("!II", 0x08000000, vni << 8) + frame + header + udp, (addr, port))
    return 0


def client_persist(addr: str, port: int, seconds: float, wait: float) -> int:
    """Echoes over one connection to a whoami server every 50 ms for `seconds`; an echo
    that has not come back after `wait` s (long enough for TCP's retransmissions to
    cross a failover) ends the connection and a new one is made. Prints one JSON line
    per event, {"t": epoch, "event": "connected" | "echo" | "lost", "conn": n}, for the
    caller to find the gap and whether the first connection survived."""
    deadline, conn, sock = time.monotonic() + seconds, 0, None

    def event(name: str) -> None:
        print(json.dumps({"t": time.time(), "event": name, "conn": conn}), flush=True)

    while time.monotonic() < deadline:
        try:
            if sock is None:
                conn += 1
                sock = socket.create_connection((addr, port), timeout=wait)
                sock.settimeout(wait)
                reader = sock.makefile("rb")
                reader.readline()
                event("connected")
            message = f"echo {time.time()}\n".encode()
            sock.sendall(message)
            if reader.readline() != message:
                raise OSError("wrong echo")
            event("echo")
            time.sleep(0.05)
        except OSError:
            event("lost")
            if sock is not None:
                sock.close()
            sock = None
            time.sleep(0.2)
    return 0


def send_vrrp(src: str, dst: str, vrid: int, priority: int, vip: str, count: int) -> int:
    """`count` VRRPv2 adverts (RFC 3768 section 5: version 2, type 1, TTL 255, no
    authentication) claiming `src` as sender and `priority` for virtual router `vrid`,
    built by hand with IP_HDRINCL so the source may be forged."""
    body = struct.pack("!BBBBBBH4s8s", 0x21, vrid, priority, 1, 0, 1, 0, socket.inet_aton(vip), bytes(8))
    body = body[:6] + struct.pack("!H", ipv4_checksum(body)) + body[8:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 255, 112, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", ipv4_checksum(header)) + header[12:]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
        for _ in range(count):
            sock.sendto(header + body, (dst, 0))
            time.sleep(0.1)
    print(f"sent {count}")
    return 0


def main(argv: list[str]) -> int:
    mode, args = argv[0], argv[1:]
    if mode == "whoami":
        serve_whoami(args[0], args[1], int(args[2]), args[3:4] == ["sniff"])
    elif mode == "page":
        serve_page(args[0], args[1], int(args[2]), args[3])
    elif mode == "get":
        return client_get(args[0], int(args[1]), args[2], float(args[3]))
    elif mode == "dns":
        records = dict(a.split("=", 1) for a in args[3:])
        serve_dns(args[0], args[1], int(args[2]), {k.lower().rstrip("."): v for k, v in records.items()})
    elif mode == "tcp":
        return client_tcp(args[0], int(args[1]), float(args[2]))
    elif mode == "persist":
        return client_persist(args[0], int(args[1]), float(args[2]), float(args[3]))
    elif mode == "vrrp":
        return send_vrrp(args[0], args[1], int(args[2]), int(args[3]), args[4], int(args[5]))
    elif mode == "hold":
        return client_hold(args[0], int(args[1]), float(args[2]))
    elif mode == "bulk":
        return client_bulk(args[0], int(args[1]), int(args[2]), int(args[3]), float(args[4]))
    elif mode == "flood":
        return client_flood(args[0], args[1], float(args[2]), int(args[3]))
    elif mode == "tagged":
        return send_tagged(args[0], int(args[1]), int(args[2]))
    elif mode == "udp":
        serve_udp(args[0], int(args[1]))
    elif mode == "send-udp":
        return send_udp(args[0], int(args[1]), *args[2:3])
    elif mode == "garp":
        return send_garp(args[0], args[1], *args[2:3])
    elif mode == "ra":
        return send_ra(args[0], args[1])
    elif mode == "vxlan":
        return send_vxlan(args[0], int(args[1]), int(args[2]), args[3], args[4], args[5], int(args[6]), *args[7:8])
    elif mode == "resolve":
        return client_resolve(args[0], args[1], float(args[2]), *args[3:4])
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda hook_args: None  # a dropped client is not an error
    sys.exit(main(sys.argv[1:]))
