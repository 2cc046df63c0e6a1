/* USDT probes (docs/tracing.md): static tracepoints that tools such as bpftrace, perf and
 * SystemTap attach to at run time. Each compiles to one `nop` and a note in the library's ELF
 * file (the operands name registers or memory already at hand), so a probe nobody attached to
 * costs the nop. Built when <sys/sdt.h> (Debian's systemtap-sdt-dev) is found and -Dusdt allows
 * it; otherwise the macros compile to nothing. Every probe is listed, with its arguments, in
 * docs/tracing.md, which tests/core/check_probes.py holds against the built library. Not
 * installed. */
#ifndef CFUTURES_TRACE_H
#define CFUTURES_TRACE_H

#ifdef CF_HAVE_SDT
#include <sys/sdt.h>
#define CF__PROBE1(name, a)          STAP_PROBE1(cfutures, name, a)
#define CF__PROBE2(name, a, b)       STAP_PROBE2(cfutures, name, a, b)
#define CF__PROBE3(name, a, b, c)    STAP_PROBE3(cfutures, name, a, b, c)
#define CF__PROBE4(name, a, b, c, d) STAP_PROBE4(cfutures, name, a, b, c, d)
#else
/* The arguments are still "used", so that a variable kept only for a probe warns nowhere. */
#define CF__PROBE1(name, a)          ((void)(a))
#define CF__PROBE2(name, a, b)       ((void)(a), (void)(b))
#define CF__PROBE3(name, a, b, c)    ((void)(a), (void)(b), (void)(c))
#define CF__PROBE4(name, a, b, c, d) ((void)(a), (void)(b), (void)(c), (void)(d))
#endif

#endif
