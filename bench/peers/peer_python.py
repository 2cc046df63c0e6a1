#!/usr/bin/env python3
"""Peer: Python's concurrent.futures and asyncio, running the cf-bench workloads.

Usage: python3 peer_python.py [--uvloop] WORKLOAD ARGS...   (or: list)

Every pool has 2 workers and is warmed before any timing starts (bench/README.md has the details).
Each run prints one line in cf-bench's format, with "python" first:
    python WORKLOAD n=N total_s=S per_task_ns=X [key=value ...]
Standard library only, except --uvloop: the HTTP workloads on uvloop's event loop (Debian's
python3-uvloop), reported as "uvloop"; `--uvloop list` is empty where uvloop cannot be imported.
"""

import asyncio
import concurrent.futures as cf
import itertools
import math
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

WORKERS = 2
MASK64 = (1 << 64) - 1
LIB = "python"


def usage_exit(msg):
    print(f"{LIB}: {msg}", file=sys.stderr)
    sys.exit(2)


def arg_count(s, what):
    try:
        v = 10.0 ** float(s[3:]) if s.startswith("10^") else float(s)
    except ValueError:
        v = math.nan
    if not (1 <= v <= 1e9) or v != math.floor(v):
        usage_exit(f"{what} must be a whole number from 1 to 1e9, not '{s}'")
    return int(v)


def arg_seconds(s, what):
    try:
        v = float(s)
    except ValueError:
        v = math.nan
    if not (0 < v <= 3600):
        usage_exit(f"{what} must be a number of seconds in (0, 3600], not '{s}'")
    return v


def report(workload, n, total_s, per_task_ns, **extra):
    fields = "".join(f" {k}={v}" for k, v in extra.items())
    nstr = f"{n:.15g}"
    print(f"{LIB} {workload} n={nstr} total_s={total_s:.6f} per_task_ns={per_task_ns:.1f}{fields}",
          flush=True)


def now():
    return time.perf_counter()


def cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def empty():
    return None


def empty1(_):
    return None


def echo(data):
    return data


def spin(iters, seed):
    """The same xorshift64 kernel as bench_spin() in bench_util.c."""
    x = seed | 1
    for _ in range(iters):
        x ^= (x << 13) & MASK64
        x ^= x >> 7
        x ^= (x << 17) & MASK64
    return x


def thread_pool():
    pool = cf.ThreadPoolExecutor(max_workers=WORKERS)
    pool.submit(empty).result()
    return pool


def process_pool():
    """A pool whose every worker process has run a task, as cf-bench's: rounds of 8 tasks per
    worker that return their pid, until every worker has answered (at most 100 rounds)."""
    pool = cf.ProcessPoolExecutor(max_workers=WORKERS)
    seen = set()
    for _ in range(100):
        seen.update(f.result() for f in [pool.submit(os.getpid) for _ in range(8 * WORKERS)])
        if len(seen) >= WORKERS:
            break
    return pool


def burst_on(pool, n, fn=empty, args=None):
    if args is None:
        fs = [pool.submit(fn) for _ in range(n)]
    else:
        fs = [pool.submit(fn, a) for a in args]
    done, not_done = cf.wait(fs, return_when=cf.ALL_COMPLETED)
    if not_done or len(done) != len(set(fs)):
        raise RuntimeError("wait returned early")
    for f in fs:
        f.result()
    return fs


def wl_burst(a):
    n = arg_count(a[0], "N")
    with thread_pool() as pool:
        t0 = now()
        fs = burst_on(pool, n)
        del fs
        s = now() - t0
    report("burst", n, s, s * 1e9 / n)


def wl_pingpong(a):
    n = arg_count(a[0], "N")
    with thread_pool() as pool:
        t0 = now()
        for _ in range(n):
            pool.submit(empty).result()
        s = now() - t0
    report("pingpong", n, s, s * 1e9 / n)


def wl_map(a):
    n = arg_count(a[0], "N")
    with thread_pool() as pool:
        t0 = now()
        got = sum(1 for _ in pool.map(empty1, itertools.repeat(None, n)))
        s = now() - t0
    if got != n:
        raise RuntimeError("map yielded a wrong number of results")
    report("map", n, s, s * 1e9 / n)


def iterate(fs):
    t0 = now()
    got = sum(1 for _ in cf.as_completed(fs))
    s = now() - t0
    if got != len(fs):
        raise RuntimeError("as_completed yielded a wrong number of futures")
    return s


def wl_as_completed(a):
    """The three views cf-bench reports: total (iterate right after submitting), done_ns (all
    futures done first), pending_ns (plain futures, completed while the iterator waits on them:
    the first is completed before the iterator starts, so that it installs its waiters, and the
    rest right after it yielded that one)."""
    n = arg_count(a[0], "N")
    with thread_pool() as pool:
        t0 = now()
        fs = [pool.submit(empty) for _ in range(n)]
        submit_s = now() - t0
        total_s = iterate(fs)
        fs = burst_on(pool, n)
        done_s = iterate(fs)
    fs = [cf.Future() for _ in range(n)]
    t0 = now()
    fs[0].set_result(None)
    got = 0
    for _ in cf.as_completed(fs):
        if got == 0:
            for f in reversed(fs[1:]):
                f.set_result(None)
        got += 1
    pending_s = now() - t0
    if got != n:
        raise RuntimeError("as_completed yielded a wrong number of futures")
    report("as_completed", n, total_s, total_s * 1e9 / n, submit_s=f"{submit_s:.6f}",
           done_ns=f"{done_s * 1e9 / n:.1f}", pending_ns=f"{pending_s * 1e9 / n:.1f}")


def wl_cpu(a):
    n = arg_count(a[0], "N")
    iters = arg_count(a[1], "ITERS")
    seeds = [(i * 0x9E3779B97F4A7C15 + 1) & MASK64 for i in range(n)]
    t0 = now()
    expect = [spin(iters, s) for s in seeds]
    seq_s = now() - t0
    with thread_pool() as pool:
        t0 = now()
        fs = [pool.submit(spin, iters, s) for s in seeds]
        cf.wait(fs)
        got = [f.result() for f in fs]
        s = now() - t0
    if got != expect:
        raise RuntimeError("cpu results differ from the sequential run")
    speedup = seq_s / s
    report("cpu", n, s, s * 1e9 / n, seq_s=f"{seq_s:.6f}", speedup=f"{speedup:.3f}",
           efficiency=f"{speedup / WORKERS:.3f}", iters=iters)


def wl_submitters(a):
    n = arg_count(a[0], "N")
    t = arg_count(a[1], "T")
    if t > n or t > 1024:
        usage_exit("T must be at most N and at most 1024")
    with thread_pool() as pool:
        start = threading.Barrier(t + 1)

        def submitter(share):
            start.wait()
            burst_on(pool, share)

        threads = [threading.Thread(target=submitter, args=(n // t + (1 if i < n % t else 0),))
                   for i in range(t)]
        for th in threads:
            th.start()
        start.wait()
        t0 = now()
        for th in threads:
            th.join()
        s = now() - t0
    report("submitters", n, s, s * 1e9 / n, threads=t)


def wl_idle(a):
    secs = arg_seconds(a[0], "S")
    with thread_pool():
        c0 = cpu_s()
        t0 = now()
        time.sleep(secs)
        s = now() - t0
        cpu_ms = (cpu_s() - c0) * 1e3
    report("idle", secs, s, 0.0, cpu_ms=f"{cpu_ms:.3f}")


def wl_memory(a):
    n = arg_count(a[0], "N")
    gate = threading.Event()
    arrived = threading.Semaphore(0)

    def blocker():
        arrived.release()
        gate.wait()

    with thread_pool() as pool:
        blockers = [pool.submit(blocker) for _ in range(WORKERS)]
        for _ in range(WORKERS):
            arrived.acquire()
        fs = [None] * n
        rss0 = rss_bytes()
        t0 = now()
        for i in range(n):
            fs[i] = pool.submit(empty)
        s = now() - t0
        rss1 = rss_bytes()
        gate.set()
        cf.wait(blockers + fs)
    report("memory", n, s, s * 1e9 / n, bytes_per_future=f"{(rss1 - rss0) / n:.1f}")


def wl_process_burst(a):
    n = arg_count(a[0], "N")
    with process_pool() as pool:
        t0 = now()
        burst_on(pool, n)
        s = now() - t0
    report("process-burst", n, s, s * 1e9 / n)


def wl_process_pingpong(a):
    n = arg_count(a[0], "N")
    with process_pool() as pool:
        t0 = now()
        for _ in range(n):
            pool.submit(empty).result()
        s = now() - t0
    report("process-pingpong", n, s, s * 1e9 / n)


def process_bytes_rounds(size):
    """Round trips of process-bytes SIZE: 64 MiB of payload each way, between 16 and 2000."""
    return max(16, min(2000, (64 << 20) // size))


def wl_process_bytes(a):
    size = arg_count(a[0], "SIZE")
    rounds = process_bytes_rounds(size)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    with process_pool() as pool:
        t0 = now()
        for _ in range(rounds):
            if pool.submit(echo, payload).result() != payload:
                raise RuntimeError("echo returned different bytes")
        s = now() - t0
    mib_s = 2 * size * rounds / s / (1 << 20)
    report("process-bytes", rounds, s, s * 1e9 / rounds, bytes=size, mib_s=f"{mib_s:.1f}")


def echo_shared(name, size):
    """The worker's side of process-bytes-shared: reads the argument in the caller's shared
    memory, copies it into a new segment it hands over (the caller unlinks it)."""
    from multiprocessing import resource_tracker, shared_memory
    arg = shared_memory.SharedMemory(name=name)
    out = shared_memory.SharedMemory(create=True, size=size)
    # The caller owns the segment from now on: this worker's tracker must not unlink it.
    resource_tracker.unregister(out._name, "shared_memory")
    out.buf[:size] = arg.buf[:size]
    arg.close()
    out.close()
    return out.name


def check_echo(got, want, size):
    """One byte per page and the last byte, as cf-bench checks the shared echo."""
    if got[0:size:4096] != want[0:size:4096] or got[size - 1] != want[size - 1]:
        raise RuntimeError("echo returned different bytes")


def wl_process_bytes_shared(a):
    """The echo through multiprocessing.shared_memory, Python's zero-copy way: the argument in a
    segment the worker attaches, the result in a segment the worker creates and the caller
    attaches; next to one copy of SIZE bytes into fresh memory in the same process."""
    from multiprocessing import shared_memory
    size = arg_count(a[0], "SIZE")
    rounds = process_bytes_rounds(size)
    arg = shared_memory.SharedMemory(create=True, size=size)
    arg.buf[:size] = (bytes(range(256)) * (size // 256 + 1))[:size]
    try:
        with process_pool() as pool:
            t0 = now()
            for _ in range(rounds):
                res = shared_memory.SharedMemory(name=pool.submit(echo_shared, arg.name,
                                                                  size).result())
                check_echo(res.buf, arg.buf, size)
                res.close()
                res.unlink()
            s = now() - t0
        t0 = now()
        for _ in range(rounds):
            copy = bytearray(arg.buf[:size])
            check_echo(copy, arg.buf, size)
            del copy
        copy_ns = (now() - t0) * 1e9 / rounds
    finally:
        arg.close()
        arg.unlink()
    trip = s * 1e9 / rounds
    mib_s = 2 * size * rounds / s / (1 << 20)
    report("process-bytes-shared", rounds, s, trip, bytes=size, mib_s=f"{mib_s:.1f}",
           memcpy_ns=f"{copy_ns:.0f}", vs_memcpy=f"{trip / copy_ns:.2f}")


def share(total, parts, i):
    """As bench_share() in bench_util.c: the share of part i when splitting total items."""
    return total // parts + (1 if i < total % parts else 0)


def run_once(loop):
    """Runs every callback that is ready now, once."""
    loop.stop()
    loop.run_forever()


async def switcher(k):
    for _ in range(k):
        await asyncio.sleep(0)


async def empty_coro():
    return None


async def park():
    await asyncio.sleep(3600)


def wl_loop_switch(a):
    """Two tasks share the N yields; created before the clock, gathered and run within it."""
    n = arg_count(a[0], "N")
    tasks = 2
    loop = asyncio.new_event_loop()
    ts = [loop.create_task(switcher(share(n, tasks, i))) for i in range(tasks)]
    t0 = now()
    loop.run_until_complete(asyncio.gather(*ts))
    s = now() - t0
    loop.close()
    report("loop-switch", n, s, s * 1e9 / n, tasks=tasks)


def wl_loop_roundtrip(a):
    n = arg_count(a[0], "N")

    async def main(pool):
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(pool, empty)
        t0 = now()
        for _ in range(n):
            await loop.run_in_executor(pool, empty)
        return now() - t0

    with thread_pool() as pool:
        s = asyncio.run(main(pool))
    report("loop-roundtrip", n, s, s * 1e9 / n)


def countdown(loop, n):
    """A callback that stops `loop` on its n-th call."""
    left = [n]

    def cb():
        left[0] -= 1
        if left[0] == 0:
            loop.stop()

    return cb


def wl_loop_call_soon(a):
    """Schedule N callbacks, then run them: a first burst on fresh memory (cold_per_task_ns),
    then the timed one."""
    n = arg_count(a[0], "N")
    loop = asyncio.new_event_loop()

    def burst():
        cb = countdown(loop, n)
        t0 = now()
        for _ in range(n):
            loop.call_soon(cb)
        loop.run_forever()
        return now() - t0

    cold = burst()
    s = burst()
    loop.close()
    report("loop-call-soon", n, s, s * 1e9 / n, cold_per_task_ns=f"{cold * 1e9 / n:.1f}")


def wl_loop_threadsafe(a):
    n = arg_count(a[0], "N")
    loop = asyncio.new_event_loop()
    cb = countdown(loop, n)

    def post():
        for _ in range(n):
            loop.call_soon_threadsafe(cb)

    th = threading.Thread(target=post)
    t0 = now()
    th.start()
    loop.run_forever()
    s = now() - t0
    th.join()
    loop.close()
    report("loop-threadsafe", n, s, s * 1e9 / n)


def wl_loop_future_memory(a):
    n = arg_count(a[0], "N")
    loop = asyncio.new_event_loop()
    fs = [None] * n
    rss0 = rss_bytes()
    t0 = now()
    for i in range(n):
        fs[i] = loop.create_future()
        fs[i].add_done_callback(empty1)
    s = now() - t0
    rss1 = rss_bytes()
    for f in fs:
        f.cancel()
    run_once(loop)
    loop.close()
    report("loop-future-memory", n, s, s * 1e9 / n, bytes_per_future=f"{(rss1 - rss0) / n:.1f}")


def wl_loop_future_await(a):
    n = arg_count(a[0], "N")

    async def main():
        loop = asyncio.get_running_loop()
        for _ in range(n):
            f = loop.create_future()
            loop.call_soon(f.set_result, None)
            await f

    loop = asyncio.new_event_loop()
    t = loop.create_task(main())
    t0 = now()
    loop.run_until_complete(t)
    s = now() - t0
    loop.close()
    report("loop-future-await", n, s, s * 1e9 / n)


def wl_loop_spawn(a):
    n = arg_count(a[0], "N")
    loop = asyncio.new_event_loop()
    ts = [None] * n
    t0 = now()
    for i in range(n):
        ts[i] = loop.create_task(empty_coro())
    loop.run_until_complete(asyncio.gather(*ts))
    ts[:] = []
    s = now() - t0
    loop.close()
    report("loop-spawn", n, s, s * 1e9 / n)


async def yield_once_coro():
    await asyncio.sleep(0)


def wl_loop_spawn_yield(a):
    n = arg_count(a[0], "N")
    loop = asyncio.new_event_loop()
    ts = [None] * n
    t0 = now()
    for i in range(n):
        ts[i] = loop.create_task(yield_once_coro())
    loop.run_until_complete(asyncio.gather(*ts))
    ts[:] = []
    s = now() - t0
    loop.close()
    report("loop-spawn-yield", n, s, s * 1e9 / n)


def wl_loop_queue(a):
    """A producer task puts N items through a Queue(maxsize=16) to a consumer, which marks each
    done; the producer then joins the queue."""
    n = arg_count(a[0], "N")
    maxsize = 16

    async def producer(q):
        for i in range(n):
            await q.put(i + 1)
        await q.join()

    async def consumer(q):
        for i in range(n):
            item = await q.get()
            if item != i + 1:
                sys.exit(f"loop-queue: item {i} out of order")
            q.task_done()

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    q = asyncio.Queue(maxsize)
    ts = [loop.create_task(producer(q)), loop.create_task(consumer(q))]
    t0 = now()
    loop.run_until_complete(asyncio.gather(*ts))
    s = now() - t0
    loop.close()
    report("loop-queue", n, s, s * 1e9 / n, maxsize=maxsize)


def wl_loop_lock(a):
    """Two tasks take one Lock N times in all, each yielding once while holding it."""
    n = arg_count(a[0], "N")
    tasks = 2

    async def locker(lock, k):
        for _ in range(k):
            async with lock:
                await asyncio.sleep(0)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    lock = asyncio.Lock()
    ts = [loop.create_task(locker(lock, share(n, tasks, i))) for i in range(tasks)]
    t0 = now()
    loop.run_until_complete(asyncio.gather(*ts))
    s = now() - t0
    loop.close()
    report("loop-lock", n, s, s * 1e9 / n, tasks=tasks)


def wl_loop_task_memory(a):
    n = arg_count(a[0], "N")
    loop = asyncio.new_event_loop()
    ts = [None] * n
    rss0 = rss_bytes()
    t0 = now()
    for i in range(n):
        ts[i] = loop.create_task(park())
    run_once(loop)
    s = now() - t0
    rss1 = rss_bytes()
    for t in ts:
        t.cancel()
    loop.run_until_complete(asyncio.gather(*ts, return_exceptions=True))
    loop.close()
    report("loop-task-memory", n, s, s * 1e9 / n, bytes_per_task=f"{(rss1 - rss0) / n:.1f}")

# ---- HTTP: asyncio (or uvloop) servers under wrk, as bench/bench_http.c drives the C ones ----

HTTP_CONNECTIONS = 50
HTTP_OFFLOAD_THREADS = 6  # asyncio's default executor size on 2 CPUs: min(32, CPUs + 4)
HELLO = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
SLEPT = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\n"
         b"slept 50 us")


class HelloProtocol(asyncio.Protocol):
    """Answers every complete request head in the buffer, with one write per read."""

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        buf = self.buf + data
        n = buf.count(b"\r\n\r\n")
        if n:
            buf = buf[buf.rfind(b"\r\n\r\n") + 4:]
            self.transport.write(HELLO * n)
        self.buf = buf


class OffloadProtocol(asyncio.Protocol):
    """Each request awaits a 50 us blocking call in the executor, then is answered, in order."""

    def __init__(self, pool):
        self.pool = pool

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""
        self.pending = 0
        self.worker = None

    def data_received(self, data):
        buf = self.buf + data
        n = buf.count(b"\r\n\r\n")
        if n:
            buf = buf[buf.rfind(b"\r\n\r\n") + 4:]
            self.pending += n
            if self.worker is None:
                self.worker = asyncio.get_running_loop().create_task(self.serve())
        self.buf = buf

    async def serve(self):
        loop = asyncio.get_running_loop()
        while self.pending:
            await loop.run_in_executor(self.pool, time.sleep, 50e-6)
            self.pending -= 1
            if not self.transport.is_closing():
                self.transport.write(SLEPT)
        self.worker = None

    def connection_lost(self, exc):
        self.pending = 0


def http_serve(mode):
    """The server: prints its port, serves until SIGTERM."""

    async def main():
        loop = asyncio.get_running_loop()
        pool = cf.ThreadPoolExecutor(max_workers=HTTP_OFFLOAD_THREADS)
        if mode == "hello":
            factory = HelloProtocol
        else:
            factory = lambda: OffloadProtocol(pool)  # noqa: E731
        server = await loop.create_server(factory, "127.0.0.1", 0, backlog=1024)
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
        print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await stop
        os._exit(0)  # requests in flight need no answer: the measurement is over

    if LIB == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(main())


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency_us(s):
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    v = float(m.group(1))
    return v * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def run_wrk(port, seconds):
    out = subprocess.run(["wrk", "-t1", f"-c{HTTP_CONNECTIONS}", "-d", f"{seconds:g}s",
                          "--latency", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)s", out)
    r = {"requests": int(m.group(1)), "seconds": float(m.group(2)),
         "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
         "p50_us": latency_us(re.search(r" 50%\s+(\S+)", out).group(1)),
         "p99_us": latency_us(re.search(r" 99%\s+(\S+)", out).group(1)), "errors": 0}
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if se:
        r["errors"] += sum(int(x) for x in se.groups())
    nx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if nx:
        r["errors"] += int(nx.group(1))
    return r


def http_load(workload, mode, a):
    seconds = arg_seconds(a[0], "SECONDS")
    cmd = [sys.executable, os.path.abspath(__file__)] + (["--uvloop"] if LIB == "uvloop" else [])
    server = subprocess.Popen(cmd + ["--serve", mode], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline().rsplit(":", 1)[1])
        run_wrk(port, 1)  # warm-up, as the C driver does
        cpu0 = proc_cpu_s(server.pid)
        r = run_wrk(port, seconds)
        cpu = proc_cpu_s(server.pid) - cpu0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
    report(workload, r["requests"], r["seconds"], cpu * 1e9 / max(r["requests"], 1),
           rps=f"{r['rps']:.0f}", p50_us=f"{r['p50_us']:.1f}", p99_us=f"{r['p99_us']:.1f}",
           cpu_s=f"{cpu:.3f}", errors=r["errors"])


def wl_http_hello(a):
    http_load("http-hello", "hello", a)


def wl_http_offload(a):
    http_load("http-offload", "offload", a)


WORKLOADS = {
    "burst": (["N"], wl_burst),
    "pingpong": (["N"], wl_pingpong),
    "map": (["N"], wl_map),
    "as_completed": (["N"], wl_as_completed),
    "cpu": (["N", "ITERS"], wl_cpu),
    "submitters": (["N", "T"], wl_submitters),
    "idle": (["S"], wl_idle),
    "memory": (["N"], wl_memory),
    "process-burst": (["N"], wl_process_burst),
    "process-pingpong": (["N"], wl_process_pingpong),
    "process-bytes": (["SIZE"], wl_process_bytes),
    "process-bytes-shared": (["SIZE"], wl_process_bytes_shared),
    "loop-call-soon": (["N"], wl_loop_call_soon),
    "loop-threadsafe": (["N"], wl_loop_threadsafe),
    "loop-future-memory": (["N"], wl_loop_future_memory),
    "loop-switch": (["N"], wl_loop_switch),
    "loop-roundtrip": (["N"], wl_loop_roundtrip),
    "loop-future-await": (["N"], wl_loop_future_await),
    "loop-spawn": (["N"], wl_loop_spawn),
    "loop-spawn-yield": (["N"], wl_loop_spawn_yield),
    "loop-task-memory": (["N"], wl_loop_task_memory),
    "http-hello": (["SECONDS"], wl_http_hello),
    "http-offload": (["SECONDS"], wl_http_offload),
    "loop-queue": (["N"], wl_loop_queue),
    "loop-lock": (["N"], wl_loop_lock),
}
HTTP_WORKLOADS = ("http-hello", "http-offload")


def uvloop_available():
    try:
        import uvloop  # noqa: F401
        return True
    except ImportError:
        return False


def main(argv):
    global LIB
    if len(argv) > 1 and argv[1] == "--uvloop":
        LIB = "uvloop"
        argv = argv[:1] + argv[2:]
    if len(argv) == 3 and argv[1] == "--serve":
        http_serve(argv[2])
        return 0
    if LIB == "uvloop" and len(argv) >= 2 and argv[1] == "list":
        print("\n".join(HTTP_WORKLOADS if uvloop_available() else ()))
        return 0
    if LIB == "uvloop" and len(argv) >= 2 and argv[1] not in HTTP_WORKLOADS:
        usage_exit(f"only {', '.join(HTTP_WORKLOADS)} run on uvloop")
    if len(argv) < 2 or argv[1] in ("help", "--help"):
        out = sys.stdout if len(argv) >= 2 else sys.stderr
        print(f"usage: {argv[0]} WORKLOAD ARGS...   (or: {argv[0]} list)", file=out)
        for name, (params, _) in WORKLOADS.items():
            print(f"  {name:<18} {' '.join(params)}", file=out)
        return 0 if len(argv) >= 2 else 2
    if argv[1] == "list":
        print("\n".join(WORKLOADS))
        return 0
    if argv[1] not in WORKLOADS:
        usage_exit(f"unknown workload '{argv[1]}' (try: list)")
    params, fn = WORKLOADS[argv[1]]
    if len(argv) - 2 != len(params):
        usage_exit(f"usage: {argv[0]} {argv[1]} {' '.join(params)}")
    fn(argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
