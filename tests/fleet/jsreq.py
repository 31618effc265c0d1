#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""One NATS request, in the plain NATS protocol, for the fleet test (which
has no NATS client: no nats CLI, no nats.py): prints the reply's payload.

Usage: jsreq.py URL SUBJECT [BODY | @FILE] [--timeout S] [--header K:V]...
Exit status 0 with a reply, 3 on no responders, 4 on a timeout, 1 on a
protocol or connection error.
"""
import argparse
import os
import socket
import sys
import time


def read_line(sock, buf):
    while b"\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    line, _, rest = buf.partition(b"\r\n")
    return line.decode(), rest


def read_exact(sock, buf, n):
    while len(buf) < n + 2:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf[:n], buf[n + 2:]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("subject")
    p.add_argument("body", nargs="?", default="")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--header", action="append", default=[])
    a = p.parse_args()
    hostport = a.url.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    body = a.body
    if body.startswith("@"):
        with open(body[1:], "rb") as f:
            data = f.read()
    else:
        data = body.encode()
    deadline = time.monotonic() + a.timeout
    sock = socket.create_connection((host, int(port)), timeout=a.timeout)
    buf = b""
    line, buf = read_line(sock, buf)
    if not line.startswith("INFO "):
        raise ConnectionError("no INFO: " + line)
    inbox = "_INBOX.jsreq" + os.urandom(6).hex()
    out = ('CONNECT {"verbose":false,"pedantic":false,"headers":true,'
           '"no_responders":true,"protocol":1,"lang":"jsreq","version":"1"}'
           "\r\n").encode()
    out += f"SUB {inbox} 1\r\n".encode()
    if a.header:
        hdr = "NATS/1.0\r\n" + "".join(h.replace(":", ": ", 1) + "\r\n"
                                      for h in a.header) + "\r\n"
        hb = hdr.encode()
        out += f"HPUB {a.subject} {inbox} {len(hb)} {len(hb) + len(data)}\r\n".encode()
        out += hb + data + b"\r\n"
    else:
        out += f"PUB {a.subject} {inbox} {len(data)}\r\n".encode() + data + b"\r\n"
    out += b"PING\r\n"
    sock.sendall(out)
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            line, buf = read_line(sock, buf)
        except socket.timeout:
            print("timeout", file=sys.stderr)
            return 4
        if line == "PING":
            sock.sendall(b"PONG\r\n")
        elif line.startswith("-ERR"):
            print(line, file=sys.stderr)
            return 1
        elif line.startswith("MSG "):
            n = int(line.split()[-1])
            payload, buf = read_exact(sock, buf, n)
            sys.stdout.write(payload.decode(errors="replace") + "\n")
            return 0
        elif line.startswith("HMSG "):
            parts = line.split()
            hlen, tlen = int(parts[-2]), int(parts[-1])
            payload, buf = read_exact(sock, buf, tlen)
            status = payload[:hlen].split(b"\r\n", 1)[0]
            if status.startswith(b"NATS/1.0 503"):
                print("no responders", file=sys.stderr)
                return 3
            sys.stdout.write(payload[hlen:].decode(errors="replace") + "\n")
            return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ConnectionError, ValueError) as e:
        print(f"jsreq: {e}", file=sys.stderr)
        sys.exit(1)
