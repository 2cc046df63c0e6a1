#!/usr/bin/env python3
"""Drives examples/http_server with real asyncio clients and checks every answer.

    http_client.py check PORT PID   concurrency, pipelining, slow and vanishing clients, large
                                    requests, bad requests; every request answered exactly once
                                    and in order; the server's descriptors back to their baseline
    http_client.py stop PORT PID SIGNAL
                                    requests in progress when SIGNAL (TERM or INT) arrives are
                                    answered with "Connection: close"; idle connections are closed;
                                    new connections are refused

Exits 0 when everything held, 1 with a message otherwise. Timeouts scale with CF_TEST_SCALE
(the valgrind run sets it). Python 3 standard library only.
"""

import asyncio
import os
import signal
import sys
import time

SCALE = float(os.environ.get("CF_TEST_SCALE", "1"))
HOST = "127.0.0.1"
BASELINE_FDS = ""


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def request(path, rid, method="GET", body=b"", extra=b"", close=False):
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nX-Request-Id: {rid}\r\n".encode()
    if body:
        head += f"Content-Length: {len(body)}\r\n".encode()
    if close:
        head += b"Connection: close\r\n"
    return head + extra + b"\r\n" + body


async def read_response(reader):
    """Returns (status, headers dict with lower-case names, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10 * SCALE)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        if ln:
            k, v = ln.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10 * SCALE)
    return status, headers, body


class Ledger:
    """Every request id sent, and how many answers each got."""

    def __init__(self):
        self.sent = {}
        self.answers = {}
        self.next_id = 0

    def new(self, expect_body):
        self.next_id += 1
        rid = f"r{self.next_id}"
        self.sent[rid] = expect_body
        return rid

    def answered(self, rid, status, body):
        check(rid in self.sent, f"answer for an unknown request {rid!r}")
        self.answers[rid] = self.answers.get(rid, 0) + 1
        check(self.answers[rid] == 1, f"request {rid} answered twice")
        check(status == 200, f"request {rid}: status {status}")
        want = self.sent[rid]
        check(want is None or body == want, f"request {rid}: body {body!r}, expected {want!r}")


async def connect():
    return await asyncio.wait_for(asyncio.open_connection(HOST, PORT), 10 * SCALE)


async def close(writer):
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


def route(i):
    if i % 7 == 3:
        return "/offload?us=200", f"slept 200 us".encode()
    if i % 50 == 11:
        return "/cpu?n=3000", b"primes below 3000: 430"
    return "/", b"hello"


async def keepalive_client(ledger, n):
    reader, writer = await connect()
    for i in range(n):
        path, body = route(i)
        rid = ledger.new(body)
        writer.write(request(path, rid))
        status, headers, got = await read_response(reader)
        check(headers.get("x-request-id") == rid, f"answer {headers.get('x-request-id')} to {rid}")
        ledger.answered(rid, status, got)
    await close(writer)


async def cpu_client(ledger):
    reader, writer = await connect()
    rid = ledger.new(b"primes below 200000: 17984")
    writer.write(request("/cpu?n=200000", rid))
    status, headers, got = await read_response(reader)
    ledger.answered(rid, status, got)
    await close(writer)


async def pipelined_client(ledger, n):
    reader, writer = await connect()
    rids = []
    data = b""
    for i in range(n):
        path, body = route(i)
        rid = ledger.new(body)
        rids.append(rid)
        data += request(path, rid)
    writer.write(data)  # all at once: the server sees several requests per read
    for rid in rids:
        status, headers, got = await read_response(reader)
        check(headers.get("x-request-id") == rid, f"pipelined answers out of order: {rid}")
        ledger.answered(rid, status, got)
    rid = ledger.new(b"hello")
    writer.write(request("/", rid, close=True))
    status, headers, got = await read_response(reader)
    ledger.answered(rid, status, got)
    check(headers.get("connection") == "close", "no Connection: close")
    rest = await asyncio.wait_for(reader.read(), 10 * SCALE)
    check(rest == b"", f"bytes after the last answer: {rest[:40]!r}")
    await close(writer)


async def slow_client(ledger):
    reader, writer = await connect()
    rid = ledger.new(b"hello")
    for b in request("/", rid, body=b"0123456789"):
        writer.write(bytes([b]))
        await writer.drain()
        await asyncio.sleep(0.0005)
    status, headers, got = await read_response(reader)
    ledger.answered(rid, status, got)
    check(headers.get("x-body-bytes") == "10", "slow client's body not counted")
    await close(writer)


async def vanishing_client(kind):
    reader, writer = await connect()
    if kind == 0:  # half a head
        writer.write(b"GET /offload HTTP/1.1\r\nHost: te")
    elif kind == 1:  # a head, half a body
        writer.write(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    elif kind == 2:  # a whole request, gone before the answer (the server's send may fail)
        writer.write(request("/offload?us=20000", "vanished"))
    else:  # gone with a reset, in the middle of a head
        writer.write(b"GET / HTTP/1.1\r\n")
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_LINGER,
                        b"\x01\x00\x00\x00\x00\x00\x00\x00")
    await writer.drain()
    await asyncio.sleep(0.01)
    writer.transport.abort() if kind == 3 else writer.close()


async def large_requests(ledger):
    reader, writer = await connect()
    big = bytes(range(256)) * 4096  # 1 MiB body: many reads on the server's side
    rid = ledger.new(b"hello")
    writer.write(request("/", rid, method="POST", body=big))
    status, headers, got = await read_response(reader)
    ledger.answered(rid, status, got)
    check(headers.get("x-body-bytes") == str(len(big)), "1 MiB body not counted right")
    rid = ledger.new(b"hello")  # a 12 KiB head, sent in pieces
    data = request("/", rid, extra=b"X-Pad: " + b"p" * 12000 + b"\r\n")
    for i in range(0, len(data), 1000):
        writer.write(data[i:i + 1000])
        await writer.drain()
    status, headers, got = await read_response(reader)
    ledger.answered(rid, status, got)
    writer.write(request("/", "too-big", extra=b"X-Pad: " + b"p" * 20000 + b"\r\n"))
    status, headers, got = await read_response(reader)
    check(status == 431, f"a 20 KiB head: status {status}")
    rest = await asyncio.wait_for(reader.read(), 10 * SCALE)
    check(rest == b"", "connection not closed after 431")
    await close(writer)


async def bad_requests(ledger):
    reader, writer = await connect()
    writer.write(request("/nowhere", "nf"))
    status, headers, _ = await read_response(reader)
    check(status == 404 and headers.get("x-request-id") == "nf", "unknown path")
    rid = ledger.new(b"hello")  # still usable after a 404
    writer.write(request("/", rid))
    status, headers, got = await read_response(reader)
    ledger.answered(rid, status, got)
    writer.write(b"NONSENSE\r\n\r\n")
    status, _, _ = await read_response(reader)
    check(status == 400, f"garbage: status {status}")
    check(await asyncio.wait_for(reader.read(), 10 * SCALE) == b"", "not closed after 400")
    await close(writer)


def describe_fds(pid):
    out = []
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            out.append(f"{fd}->{os.readlink(f'/proc/{pid}/fd/{fd}')}")
        except OSError:
            pass
    return " ".join(out)


def open_connections(pid, port):
    """The server's descriptors that are TCP connections on its port (not the listener)."""
    conns = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for ln in f:
                    t = ln.split()
                    if int(t[1].rsplit(":", 1)[1], 16) == port and t[3] != "0A":
                        conns.add(t[9])
        except OSError:
            pass
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        n += link.startswith("socket:[") and link[8:-1] in conns
    return n


def count_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


async def settle_fds(pid, baseline=None):
    """Waits until the server has closed every connection (and, given a baseline, until its
    descriptor count is back to it); returns the count."""
    deadline = time.monotonic() + 10 * SCALE
    last = None
    seen = ""  # what the last look found, for the failure message (a later look may differ)
    while time.monotonic() < deadline:
        conns = open_connections(pid, PORT)
        n = count_fds(pid)
        conns = max(conns, open_connections(pid, PORT))
        quiet = conns == 0
        if quiet and n == last and n == (baseline if baseline is not None else n):
            return n
        seen = f"{n} descriptors and {conns} connections: {describe_fds(pid)}"
        last = n if quiet else None
        await asyncio.sleep(0.02)
    raise Failure(f"after {10 * SCALE:g} s the server still had {seen} ({baseline} descriptors "
                  f"at the start: {BASELINE_FDS})")


async def run_check(pid):
    ledger = Ledger()
    # Warm-up: every route once, so that what the server opens lazily (the process pool's
    # channels) is open before the baseline is taken.
    await keepalive_client(ledger, 60)
    await asyncio.gather(*[cpu_client(ledger) for _ in range(4)])  # both process workers
    baseline = await settle_fds(pid)
    global BASELINE_FDS
    BASELINE_FDS = describe_fds(pid)
    await asyncio.gather(*[keepalive_client(ledger, 20) for _ in range(100)])
    await asyncio.gather(*[pipelined_client(ledger, 40) for _ in range(10)])
    await asyncio.gather(*[slow_client(ledger) for _ in range(10)],
                         *[vanishing_client(k % 4) for k in range(40)],
                         large_requests(ledger), bad_requests(ledger))
    unanswered = [r for r in ledger.sent if ledger.answers.get(r) != 1]
    check(not unanswered, f"{len(unanswered)} requests unanswered, e.g. {unanswered[:3]}")
    await settle_fds(pid, baseline)
    print(f"ok: {len(ledger.sent)} requests answered exactly once; descriptors back to {baseline}")


async def wait_active(n):
    """Waits until the server is handling `n` requests (besides the /stats ones asking)."""
    reader, writer = await connect()
    deadline = time.monotonic() + 10 * SCALE
    while True:
        writer.write(request("/stats", "stats"))
        status, _, body = await read_response(reader)
        check(status == 200, f"/stats: status {status}")
        if int(body.split()[3]) >= n:
            break
        check(time.monotonic() < deadline, f"the server never had {n} requests in progress")
        await asyncio.sleep(0.01)
    await close(writer)


async def run_stop(pid, signame):
    ledger = Ledger()
    idle = [await connect() for _ in range(5)]
    busy = []
    us = int(300000 * SCALE)
    for _ in range(5):
        reader, writer = await connect()
        rid = ledger.new(f"slept {us} us".encode())
        writer.write(request(f"/offload?us={us}", rid))
        busy.append((rid, reader, writer))
    await wait_active(len(busy))  # the requests are in the thread pool now
    os.kill(pid, getattr(signal, "SIG" + signame))
    for rid, reader, writer in busy:
        status, headers, got = await read_response(reader)
        ledger.answered(rid, status, got)
        check(headers.get("connection") == "close", "answer during shutdown without close")
        check(await asyncio.wait_for(reader.read(), 10 * SCALE) == b"", "busy not closed")
        await close(writer)
    for reader, writer in idle:
        check(await asyncio.wait_for(reader.read(), 10 * SCALE) == b"", "idle not closed")
        await close(writer)
    try:
        _, w = await asyncio.open_connection(HOST, PORT)
        await close(w)
        # The listening socket may close a moment after the idle connections: try once more.
        await asyncio.sleep(0.2 * SCALE)
        _, w = await asyncio.open_connection(HOST, PORT)
        await close(w)
        raise Failure("still accepting connections after the signal")
    except ConnectionRefusedError:
        pass
    print(f"ok: {len(busy)} requests in progress answered, {len(idle)} idle connections closed")


def main():
    global PORT
    mode, PORT, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    try:
        if mode == "check":
            asyncio.run(run_check(pid))
        else:
            asyncio.run(run_stop(pid, sys.argv[4]))
    except (Failure, asyncio.TimeoutError, asyncio.IncompleteReadError, OSError) as e:
        import traceback
        traceback.print_exc()
        print(f"FAILED ({mode}): {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
