#!/usr/bin/env python3
"""Holds the USDT probes of the built library to the table of docs/tracing.md.

Usage: check_probes.py READELF LIBRARY TRACING_MD enabled|disabled

With probes built in (`enabled`), `readelf -n LIBRARY` must list, for provider cfutures, exactly
the probes the table names (a probe may have several locations), each location with the number
of arguments the table gives it. Without them (`disabled`), the library must carry no stapsdt
note at all.
"""
import re
import subprocess
import sys


def documented(tracing_md):
    probes = {}
    for line in open(tracing_md, encoding='utf-8'):
        m = re.match(r'\|\s*`(\w+__\w+)`\s*\|([^|]*)\|', line)
        if m:
            probes[m.group(1)] = len(re.findall(r'`\w+`', m.group(2)))
    return probes


def in_library(readelf, library):
    out = subprocess.run([readelf, '-n', library], check=True, capture_output=True,
                         text=True).stdout
    found = {}  # name -> set of argument counts over its locations
    provider = name = None
    for line in out.splitlines():
        m = re.search(r'Provider:\s*(\S+)', line)
        if m:
            provider, name = m.group(1), None
        m = re.search(r'Name:\s*(\S+)', line)
        if m and provider == 'cfutures':
            name = m.group(1)
            found.setdefault(name, set())
        m = re.search(r'Arguments:(.*)', line)
        if m and provider == 'cfutures' and name:
            found[name].add(len(m.group(1).split()))
    # A probe without arguments prints no Arguments line.
    for probe, counts in found.items():
        if not counts:
            counts.add(0)
    return found, 'stapsdt' in out


def main():
    readelf, library, tracing_md, mode = sys.argv[1:5]
    table = documented(tracing_md)
    found, any_note = in_library(readelf, library)
    errors = []
    if mode == 'disabled':
        if any_note:
            errors.append('built without USDT, but the library has stapsdt notes')
    else:
        if not table:
            errors.append('no probe table found in ' + tracing_md)
        for probe, nargs in sorted(table.items()):
            if probe not in found:
                errors.append(f'{probe}: documented, not in the library')
            elif found[probe] != {nargs}:
                errors.append(f'{probe}: documented with {nargs} arguments, the library has '
                              f'{sorted(found[probe])}')
        for probe in sorted(set(found) - set(table)):
            errors.append(f'{probe}: in the library, not documented in {tracing_md}')
    for e in errors:
        print(e)
    if not errors:
        print(f'{len(table) if mode != "disabled" else 0} probes as documented ({mode})')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
