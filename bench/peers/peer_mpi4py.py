#!/usr/bin/env python3
"""Peer: mpi4py.futures (MPIPoolExecutor), running cf-bench's MPI workloads.

Usage: python3 peer_mpi4py.py WORKLOAD ARGS...   (or: list)

Like cf-bench-mpi it runs as a 3-rank job, one client and two workers, started the way mpi4py
documents for mpirun-launched jobs (`mpirun -n 3 python3 -m mpi4py.futures peer_mpi4py.py ...`):
run plainly, it starts itself that way, with an interpreter that has mpi4py (Debian's
python3-mpi4py is for /usr/bin/python3). `list` prints nothing when no interpreter has mpi4py,
so bench/compare skips this peer. The executor is warmed before timing. Prints one line in
cf-bench's format, with "mpi4py" first.
"""

import os
import shutil
import subprocess
import sys
import time

RANKS = "3"
WORKLOADS = ["mpi-burst", "mpi-pingpong", "mpi-bytes"]


def interpreter():
    """A Python that can import mpi4py, or None."""
    for py in [sys.executable, "/usr/bin/python3", shutil.which("python3")]:
        if not py or not os.path.exists(py):
            continue
        ok = subprocess.run([py, "-c", "import mpi4py.futures"], capture_output=True).returncode
        if ok == 0:
            return py
    return None


def count(s, what):
    try:
        v = 10.0 ** float(s[3:]) if s.startswith("10^") else float(s)
    except ValueError:
        v = -1
    if not (1 <= v <= 1e9) or v != int(v):
        print(f"mpi4py: {what} must be a whole number from 1 to 1e9, not '{s}'", file=sys.stderr)
        sys.exit(2)
    return int(v)


def report(workload, n, total_s, per_task_ns, extra=""):
    print(f"mpi4py {workload} n={n} total_s={total_s:.6f} per_task_ns={per_task_ns:.1f}{extra}",
          flush=True)


def empty():
    return None


def echo(data):
    return data


def run(workload, arg):
    from mpi4py.futures import MPIPoolExecutor, wait
    with MPIPoolExecutor() as ex:
        wait([ex.submit(empty) for _ in range(64)])  # every worker answers: warm
        if workload == "mpi-burst":
            n = count(arg, "N")
            t0 = time.perf_counter()
            wait([ex.submit(empty) for _ in range(n)])
            s = time.perf_counter() - t0
            report(workload, n, s, s * 1e9 / n)
        elif workload == "mpi-pingpong":
            n = count(arg, "N")
            t0 = time.perf_counter()
            for _ in range(n):
                ex.submit(empty).result()
            s = time.perf_counter() - t0
            report(workload, n, s, s * 1e9 / n)
        else:
            size = count(arg, "SIZE")
            rounds = max(4, min(2000, (256 << 20) // size))
            payload = bytes(i & 0xFF for i in range(size)) if size < (1 << 20) else \
                (bytes(range(256)) * (size // 256 + 1))[:size]
            ex.submit(echo, payload).result()  # warms the large-message path
            s = 0.0
            for _ in range(rounds):
                t0 = time.perf_counter()
                back = ex.submit(echo, payload).result()
                s += time.perf_counter() - t0
                if back != payload:
                    print("mpi4py: the echo differs from the argument", file=sys.stderr)
                    sys.exit(1)
            mib_s = 2.0 * size * rounds / s / (1 << 20)
            report(workload, rounds, s, s * 1e9 / rounds, f" bytes={size} mib_s={mib_s:.1f}")


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("list", "help"):
        if interpreter():
            print("\n".join(WORKLOADS))
        return 0
    if args[0] not in WORKLOADS or len(args) != 2:
        print(f"mpi4py: usage: {sys.argv[0]} {{{'|'.join(WORKLOADS)}}} N", file=sys.stderr)
        return 2
    if "OMPI_COMM_WORLD_SIZE" in os.environ or "PMI_RANK" in os.environ:
        run(args[0], args[1])  # rank 0 under `python3 -m mpi4py.futures`
        return 0
    py = interpreter()
    if not py:
        print("mpi4py: no Python with mpi4py (Debian: apt-get install python3-mpi4py)",
              file=sys.stderr)
        return 1
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = ["mpirun", "-n", RANKS, "--oversubscribe", py, "-m", "mpi4py.futures",
           os.path.abspath(__file__)] + args
    return subprocess.run(cmd, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
