#!/usr/bin/env python3
"""Runs Doxygen, then keeps the man pages that belong in a system's man3.

Usage: build_reference.py DOXYGEN DOXYFILE REFERENCE_DIR

Doxygen (MAN_LINKS) writes a page per header and a one-line link page per symbol, struct field
and directory. Field names (len.3, data.3) and directories would clash with other packages'
pages once installed, so only the cf_* / CF_* pages and the headers' pages stay, the latter
renamed cfutures_<header>.3 (cfutures.h.3 keeps its name) with the links that point to them.
"""
import pathlib
import re
import subprocess
import sys


def main():
    doxygen, doxyfile, reference = sys.argv[1:4]
    subprocess.run([doxygen, doxyfile], check=True)
    man3 = pathlib.Path(reference) / 'man3'
    renamed = {}
    for page in sorted(man3.glob('*.3')):
        name = page.name
        if name.endswith('.h.3'):
            if not name.startswith('cfutures'):
                renamed[name] = 'cfutures_' + name
        elif not name.startswith(('cf_', 'CF_')):
            page.unlink()
    for old, new in renamed.items():
        (man3 / old).rename(man3 / new)
    for page in man3.glob('*.3'):
        text = page.read_text()
        linked = re.sub(r'^\.so man3/(\S+)$',
                        lambda m: f'.so man3/{renamed.get(m.group(1), m.group(1))}', text,
                        flags=re.M)
        if linked != text:
            page.write_text(linked)


if __name__ == '__main__':
    try:
        main()
    except subprocess.CalledProcessError as e:
        sys.exit(e.returncode)
