#!/usr/bin/env python3
"""A Python host for test_process_start: a C task library used through ctypes.

python3 start_ctypes.py LIBCFUTURES TASKS runs a process-pool map of start_square (a C function
in TASKS) over 0..99 with the default start method, checks every result, runs start_fail and
checks its code and message, and prints "ok <sum>". Python's own main program is not linked
with libcfutures: the pool must use the helper program, never re-run python.
"""
import ctypes
import sys

CF_EOF = -4006
CF_ETASK = -4001
N = 100


class Bytes(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def main():
    lib = ctypes.CDLL(sys.argv[1])
    tasks = ctypes.CDLL(sys.argv[2])
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    lib.cf_process_pool_new.argtypes = [ctypes.POINTER(vp), vp]
    lib.cf_executor_map_bytes.argtypes = [ctypes.POINTER(vp), vp, vp, ctypes.POINTER(Bytes), sz,
                                          ctypes.c_double, sz]
    lib.cf_executor_submit_bytes.argtypes = [ctypes.POINTER(vp), vp, vp, vp, sz]
    lib.cf_map_next.argtypes = [ctypes.POINTER(vp), vp]
    lib.cf_map_current.argtypes = [vp]
    lib.cf_map_current.restype = vp
    lib.cf_map_free.argtypes = [vp]
    lib.cf_future_result_bytes.argtypes = [ctypes.POINTER(vp), ctypes.POINTER(sz), vp,
                                           ctypes.c_double]
    lib.cf_future_exception.argtypes = [ctypes.POINTER(ctypes.c_int),
                                        ctypes.POINTER(ctypes.c_char_p), vp, ctypes.c_double]
    lib.cf_future_unref.argtypes = [vp]
    lib.cf_executor_free.argtypes = [vp]
    lib.cf_err_name.restype = ctypes.c_char_p
    square = ctypes.cast(tasks.start_square, vp)
    fail = ctypes.cast(tasks.start_fail, vp)

    ex = vp()
    rc = lib.cf_process_pool_new(ctypes.byref(ex), None)
    if rc:
        print("pool", lib.cf_err_name(rc).decode())
        return 1
    values = (ctypes.c_int * N)(*range(N))
    args = (Bytes * N)(*[Bytes(ctypes.addressof(values) + i * ctypes.sizeof(ctypes.c_int),
                               ctypes.sizeof(ctypes.c_int)) for i in range(N)])
    it = vp()
    rc = lib.cf_executor_map_bytes(ctypes.byref(it), ex, square, args, N, 60.0, 0)
    if rc:
        print("map", lib.cf_err_name(rc).decode())
        return 1
    results = []
    while lib.cf_map_next(None, it) == 0:
        data, length = vp(), sz()
        rc = lib.cf_future_result_bytes(ctypes.byref(data), ctypes.byref(length),
                                        lib.cf_map_current(it), 0.0)
        if rc or length.value != ctypes.sizeof(ctypes.c_int):
            print("result", lib.cf_err_name(rc).decode())
            return 1
        results.append(ctypes.c_int.from_address(data.value).value)
    lib.cf_map_free(it)
    if results != [i * i for i in range(N)]:
        print("wrong results", results)
        return 1

    f = vp()
    rc = lib.cf_executor_submit_bytes(ctypes.byref(f), ex, fail, None, 0)
    code, message = ctypes.c_int(), ctypes.c_char_p()
    if rc or lib.cf_future_exception(ctypes.byref(code), ctypes.byref(message), f, 60.0):
        print("fail task", lib.cf_err_name(rc).decode())
        return 1
    if code.value != -7 or message.value != b"failed on purpose":
        print("fail task gave", code.value, message.value)
        return 1
    lib.cf_future_unref(f)
    lib.cf_executor_free(ex)
    print("ok", sum(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
