#!/usr/bin/env python3
"""Holds the public structs to the ABI table of docs/abi.md.

Usage: check_abi.py INCLUDE_DIR ABI_MD ABI_SIZES_EXE

Every `typedef struct cf_x {` with a body in a public header must have a row in the table of
docs/abi.md and be measured by tests/core/abi_sizes.c, with the same LP64 size and the same
number of reserved slots left (or "frozen"). A row for a struct no header defines fails too.
Exits 77 (meson's "skipped") on a platform whose pointers are not 8 bytes: the table is LP64.
"""
import pathlib
import re
import subprocess
import sys


def header_structs(include_dir):
    found = {}
    for path in sorted(pathlib.Path(include_dir).rglob('*.h*')):
        for name in re.findall(r'typedef\s+struct\s+(cf_\w+)\s*\{', path.read_text()):
            found[name] = path.name
    return found


def doc_table(abi_md):
    rows = {}
    for line in pathlib.Path(abi_md).read_text().splitlines():
        m = re.match(r'\|\s*`(cf_\w+)`\s*\|\s*`?[\w/.]+`?\s*\|\s*(\d+)\s*\|\s*(\d+|frozen)\s*\|', line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), m.group(3))
    return rows


def measured(exe):
    out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
    sizes = {}
    pointer = None
    for line in out.splitlines():
        name, size, *rest = line.split()
        if name == 'pointer':
            pointer = int(size)
        elif name == 'skip':
            sizes[size] = None  # a header this build cannot compile (MPI absent)
        else:
            sizes[name] = (int(size), rest[0])
    return pointer, sizes


def main():
    include_dir, abi_md, exe = sys.argv[1:4]
    headers = header_structs(include_dir)
    table = doc_table(abi_md)
    pointer, sizes = measured(exe)
    if pointer != 8:
        print(f'pointers are {pointer} bytes: the ABI table is for LP64 only')
        return 77
    errors = []
    for name, header in headers.items():
        if name not in table:
            errors.append(f'{name} ({header}) has no row in docs/abi.md')
        if name not in sizes:
            errors.append(f'{name} ({header}) is not measured by tests/core/abi_sizes.c')
    for name in table:
        if name not in headers:
            errors.append(f'docs/abi.md lists {name}, which no public header defines')
    for name, got in sizes.items():
        want = table.get(name)
        if got is None:
            print(f'check_abi: {name} not measured: its header needs a library this build lacks')
        elif want and want != got:
            errors.append(f'{name}: docs/abi.md says size {want[0]}, reserved {want[1]}; '
                          f'the compiler says size {got[0]}, reserved {got[1]}')
    for e in errors:
        print('check_abi: ' + e)
    if not errors:
        print(f'check_abi: {len(headers)} public structs match docs/abi.md')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
