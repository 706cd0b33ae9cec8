"""Tiny servers and clients the lab runs inside its namespaces (stdlib only).

Run as a script: `python labnet_tools.py <mode> ...`. Servers print READY once
listening, then one line per event, flushed, so the lab can follow them.

  whoami NAME ADDR PORT          TCP: greets "NAME <peer ip>", then echoes lines
  dns VPC_CIDR ADDR PORT N=IP..  UDP DNS resolver that, like the VPC resolver,
                                 answers only sources inside VPC_CIDR; prints
                                 "query <source ip> <name>" for every query
  tcp ADDR PORT TIMEOUT          client: prints the greeting (exit 1 on failure)
  hold ADDR PORT SECONDS         client: keeps one connection, one echo every
                                 0.05 s; exit 0 only if every echo came back
  resolve SERVER NAME TIMEOUT [SOURCE]  client: prints the A record or exits 1
"""

from __future__ import annotations

import ipaddress
import socket
import socketserver
import struct
import sys
import threading
import time


def serve_whoami(name: str, addr: str, port: int) -> None:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(f"{name} {self.client_address[0]}\n".encode())
            self.wfile.flush()
            for line in self.rfile:
                self.wfile.write(line)
                self.wfile.flush()

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    with Server((addr, port), Handler) as server:
        print("READY", flush=True)
        server.serve_forever()


def _parse_qname(packet: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while True:
        length = packet[offset]
        offset += 1
        if length == 0:
            return ".".join(labels).lower(), offset
        labels.append(packet[offset : offset + length].decode("ascii", "replace"))
        offset += length


def serve_dns(vpc_cidr: str, addr: str, port: int, records: dict[str, str]) -> None:
    vpc = ipaddress.ip_network(vpc_cidr)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, port))
    print("READY", flush=True)
    while True:
        packet, (source, source_port) = sock.recvfrom(4096)
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


def main(argv: list[str]) -> int:
    mode, args = argv[0], argv[1:]
    if mode == "whoami":
        serve_whoami(args[0], args[1], int(args[2]))
    elif mode == "dns":
        records = dict(a.split("=", 1) for a in args[3:])
        serve_dns(args[0], args[1], int(args[2]), {k.lower().rstrip("."): v for k, v in records.items()})
    elif mode == "tcp":
        return client_tcp(args[0], int(args[1]), float(args[2]))
    elif mode == "hold":
        return client_hold(args[0], int(args[1]), float(args[2]))
    elif mode == "resolve":
        return client_resolve(args[0], args[1], float(args[2]), *args[3:4])
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda hook_args: None  # a dropped client is not an error
    sys.exit(main(sys.argv[1:]))
