#!/bin/sh
# Runs one MPI job for `meson test` and checks how it ended: its exit status, how many ranks
# reached the end of main() (each leaves exited.<rank> in $CF_TEST_MPI_DIR), and that no process
# of the test programs is left behind once the job is over.
#
# Usage: run_mpi.sh [--no-valgrind REASON] [--retry-spawn-hang] MARKERS PROGRAM... -- COMMAND...
#        run_mpi.sh --skip REASON
# --retry-spawn-hang: the job spawns workers, and Open MPI 4.1.4 with PMIx 4 (Debian 12) hangs
# now and then inside MPI_Comm_spawn() (openpmix/openpmix#2735). The program leaves
# spawning.<n> before each spawn and spawned.<n> after; a job that times out with a spawn
# begun and never returned is run again (up to 3 attempts), saying so. Any other hang fails.
# MARKERS is the number of exited.* files expected (-1: not counted). PROGRAMs are the test
# executables whose processes must all be gone at the end. Exits 77 (meson's "skipped") when
# there is no MPI to run.
set -u

if [ "$1" = --skip ]; then
    echo "SKIP: $2"
    exit 77
fi
if ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIP: mpirun is not installed (Debian: apt-get install openmpi-bin)"
    exit 77
fi

no_valgrind=""
if [ "$1" = --no-valgrind ]; then
    no_valgrind=$2
    shift 2
fi
if [ -n "${CF_TEST_UNDER_VALGRIND:-}" ] && [ -n "$no_valgrind" ]; then
    echo "SKIP under valgrind: $no_valgrind"
    exit 77
fi

retry_spawn=false
if [ "$1" = --retry-spawn-hang ]; then
    retry_spawn=true
    shift
fi

markers=$1
shift
programs=""
while [ "$1" != -- ]; do
    programs="$programs $(readlink -f "$1")"
    shift
done
shift

dir=$(mktemp -d /tmp/cf-mpi-XXXXXX)
trap 'rm -rf "$dir"' EXIT
export CF_TEST_MPI_DIR="$dir"
# Open MPI refuses to run as root unless told; CI runs as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# More ranks than cores (3 ranks on 2 vCPUs), also for MPI_Comm_spawn.
export OMPI_MCA_rmaps_base_oversubscribe=1
# A spawned job reaches its parent over TCP: keep that on the loopback interface.
export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo

# Under ASan the programs check for leaks themselves before MPI_Finalize() (mpi_test.h), with
# Open MPI's own start-up leaks suppressed (lsan.supp, which says why); the slow unwinder names
# the frames of Open MPI's libraries, built without frame pointers.
if [ -n "${ASAN_OPTIONS+set}" ]; then
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}leak_check_at_exit=0:fast_unwind_on_malloc=0"
    export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$(dirname "$0")/lsan.supp:print_suppressions=0"
fi

# Under TSan, Open MPI's internals are suppressed (tsan.supp says why).
if [ -n "${TSAN_OPTIONS+set}" ]; then
    export TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}suppressions=$(dirname "$0")/tsan.supp"
fi

# Under valgrind (.ci/matrix valgrind), the test programs of the job run under memcheck: the
# wrapper `meson test` puts around this script does not follow mpirun's children. Leaks are left
# to the ASan run (mpi_test.h): memcheck cannot tell Open MPI's exit-time leaks from ours.
limit=120
$retry_spawn && limit=60
if [ -n "${CF_TEST_UNDER_VALGRIND:-}" ]; then
    limit=900
    here=$(dirname "$(readlink -f "$0")")
    cmd=""
    for arg in "$@"; do
        for p in $programs; do
            if [ "$(readlink -f "$arg" 2>/dev/null)" = "$p" ]; then
                cmd="$cmd valgrind --quiet --error-exitcode=1 --leak-check=no"
                cmd="$cmd --suppressions=/usr/share/openmpi/openmpi-valgrind.supp"
                cmd="$cmd --suppressions=$here/valgrind.supp"
                break
            fi
        done
        cmd="$cmd $arg"
    done
    set -- $cmd
fi

# Kills what is left of an attempt: processes of the test programs.
kill_leftovers() {
    for exe in /proc/[0-9]*/exe; do
        target=$(readlink "$exe" 2>/dev/null) || continue
        for p in $programs; do
            if [ "$target" = "$p" ]; then
                pid=${exe%/exe}
                kill -9 "${pid#/proc/}" 2>/dev/null
            fi
        done
    done
}

# True when the attempt hung inside MPI_Comm_spawn: a spawn began and never returned.
hung_in_spawn() {
    for f in "$dir"/spawning.*; do
        [ -e "$f" ] || continue
        [ -e "$dir/spawned.${f##*.}" ] || return 0
    done
    return 1
}

attempt=1
while :; do
    timeout -k 10 "$limit" "$@"
    status=$?
    if [ "$status" -eq 124 ] && $retry_spawn && hung_in_spawn && [ "$attempt" -lt 3 ]; then
        echo "NOTE: attempt $attempt hung inside MPI_Comm_spawn() (Open MPI with PMIx 4," \
             "openpmix/openpmix#2735); running the job again"
        kill_leftovers
        sleep 1
        rm -f "$dir"/*
        attempt=$((attempt + 1))
        continue
    fi
    break
done

bad=0
if [ "$status" -ne 0 ]; then
    echo "FAIL: the job exited with status $status"
    bad=1
fi
if [ "$markers" -ge 0 ]; then
    n=$(ls "$dir" | grep -c '^exited\.')
    if [ "$n" -ne "$markers" ]; then
        echo "FAIL: $n ranks reached the end of main(), expected $markers"
        bad=1
    fi
fi

# No orphan: wait a little for the runtime to reap what it started, then look for survivors.
tries=0
while :; do
    left=""
    for exe in /proc/[0-9]*/exe; do
        target=$(readlink "$exe" 2>/dev/null) || continue
        for p in $programs; do
            [ "$target" = "$p" ] && left="$left ${exe%/exe}"
        done
    done
    [ -z "$left" ] && break
    tries=$((tries + 1))
    if [ "$tries" -ge 50 ]; then
        echo "FAIL: processes of the job are still running:$left"
        for p in $left; do kill -9 "${p#/proc/}" 2>/dev/null; done
        bad=1
        break
    fi
    sleep 0.1
done
exit $bad
