#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_frame (tests/fuzz/corpus_frame/): valid frames of every type,
streams of several frames, truncations and near misses. Layout: lib/process_pool/frame.c (48-byte
little-endian header, payload padded to 16). Run from anywhere; overwrites the directory."""
import os
import struct

MAGIC = 0x43465046
INIT, MODULE, TASK, EXIT, READY, INIT_FAILED, RESULT = range(1, 8)
FD, FN = 1, 2
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_frame")


def frame(ftype, flags=0, code=0, module=0, fid=0, offset=0, payload=b"", length=None,
          magic=MAGIC, reserved=0, reserved2=0):
    n = len(payload) if length is None else length
    head = struct.pack("<IBBHiIQQQQ", magic, ftype, flags, reserved, code, module, fid, offset,
                       n, reserved2)
    body = head + (b"" if flags & FD else payload)
    return body + b"\0" * (-len(body) % 16)


seeds = {
    "init": frame(INIT, fid=5),
    "init_fn": frame(INIT, flags=FN, module=1, offset=0x1130, payload=b"init-arg"),
    "init_fn_fd": frame(INIT, flags=FN | FD, module=0, offset=0x40, length=1 << 20),
    "module": frame(MODULE, fid=0, payload=b"/usr/lib/libdemo.so"),
    "module_main": frame(MODULE, fid=1),
    "task": frame(TASK, fid=42, module=0, offset=0x1234, payload=b"\x07\0\0\0"),
    "task_fd": frame(TASK, flags=FD, fid=43, length=100000),
    "exit": frame(EXIT),
    "ready": frame(READY, fid=4242),
    "init_failed": frame(INIT_FAILED, code=-22, fid=4242, payload=b"no config"),
    "result_ok": frame(RESULT, fid=42, payload=b"\x31\0\0\0"),
    "result_empty": frame(RESULT, fid=44),
    "result_fd": frame(RESULT, flags=FD, fid=45, length=1 << 24),
    "result_err": frame(RESULT, code=-4001, fid=46, payload=b"task failed: bad input"),
    "result_1k": frame(RESULT, fid=47, payload=b"r" * 1024),
    "bad_magic": frame(RESULT, fid=1, magic=0x12345678),
    "bad_type": frame(9),
    "bad_flags": frame(TASK, flags=0x80),
    "bad_reserved": frame(TASK, reserved=1),
    "bad_reserved2": frame(READY, reserved2=7),
    "bad_fn_flag": frame(RESULT, flags=FN),
    "bad_inline_len": frame(TASK, flags=FD, length=65537)[:48],
    "bad_exit_len": frame(EXIT, payload=b"x"),
    "bad_result_fd_err": frame(RESULT, flags=FD, code=-1, length=4),
    "bad_module_long": frame(MODULE, payload=b"m" * 4097),
    "huge_fd_len": frame(RESULT, flags=FD, length=(1 << 64) - 1),
}
seeds["stream"] = seeds["ready"] + seeds["result_ok"] + seeds["result_err"] + seeds["result_fd"]
seeds["stream_truncated"] = (seeds["ready"] + seeds["result_ok"])[:-9]
seeds["header_only_prefix"] = seeds["task"][:30]
seeds["stream_then_garbage"] = seeds["result_empty"] + b"\xab" * 40

os.makedirs(OUT, exist_ok=True)
for old in os.listdir(OUT):
    os.remove(os.path.join(OUT, old))
for name, data in sorted(seeds.items()):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"{len(seeds)} seeds in {OUT}")
