#!/usr/bin/env python3
"""Fails on any public symbol the API reference leaves undocumented.

Usage: check_reference.py XML_DIR INCLUDE_DIR [STAMP]

Reads Doxygen's XML output (the Doxyfile extracts every symbol, documented or not) and requires
a description for every file under include/, every function, typedef, enum, enum constant, macro
and global of those files, and every struct with each of its fields. Doxygen's own
WARN_IF_UNDOCUMENTED misses enum constants and macros, hence this check. It also requires every
header of INCLUDE_DIR to be in the reference, so a header the Doxyfile does not read is caught
too. Writes STAMP (for the build system) when all is well.
"""
import pathlib
import sys
import xml.etree.ElementTree as ET


def described(element):
    text = ''
    for tag in ('briefdescription', 'detaileddescription'):
        node = element.find(tag)
        if node is not None:
            text += ''.join(node.itertext())
    return bool(text.strip())


def where(element):
    loc = element.find('location')
    if loc is None:
        return '?'
    return f"{loc.get('file')}:{loc.get('line')}"


def main():
    xml_dir = pathlib.Path(sys.argv[1])
    include_dir = pathlib.Path(sys.argv[2])
    stamp = sys.argv[3] if len(sys.argv) > 3 else None
    missing = []
    files_seen = set()
    for path in sorted(xml_dir.glob('*.xml')):
        if path.name in ('index.xml', 'Doxyfile.xml'):
            continue
        for compound in ET.parse(path).getroot().iter('compounddef'):
            kind = compound.get('kind')
            name = compound.findtext('compoundname')
            if kind not in ('file', 'struct', 'union'):
                continue
            if kind == 'file':
                if not name.endswith('.h'):
                    continue  # the generated .dox pages document symbols of the headers
                files_seen.add(name)
            if name.startswith(('cf__', 'CF__')):
                continue
            if not described(compound):
                missing.append(f'{where(compound)}: {kind} {name}')
            for member in compound.iter('memberdef'):
                mname = member.findtext('name')
                if mname.startswith(('cf__', 'CF__')):
                    continue
                if not described(member):
                    missing.append(f"{where(member)}: {member.get('kind')} {mname}")
                for value in member.findall('enumvalue'):
                    if not described(value):
                        missing.append(f"{where(member)}: enum constant {value.findtext('name')}"
                                       f" of {mname}")
    for header in sorted(include_dir.rglob('*.h*')):
        if header.name.endswith(('.h', '.h.in')):
            name = header.name.removesuffix('.in')
            if name not in files_seen:
                missing.append(f'{header}: header missing from the reference (not read by Doxygen)')
    for m in missing:
        print(f'undocumented: {m}')
    if missing:
        print(f'check_reference: {len(missing)} public symbols without documentation '
              '(a doc comment /** ... */ right above each, or /**< ... */ after a field)')
        return 1
    print(f'check_reference: every public symbol of {len(files_seen)} headers is documented')
    if stamp:
        pathlib.Path(stamp).write_text('ok\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
