/* fentry/fexit entry points, named the way the running bcc parses them.
 *
 * bcc attaches every function named kfunc__... / kretfunc__... as it loads the source.
 * Since module support (the release that added MODULE_KFUNC_PROBE to its helpers, e.g.
 * Debian 13's 0.31) it reads the name as kfunc__<module>__<function>, and a name without
 * the module part makes libbcc overrun a buffer and abort (seen: "buffer overflow
 * detected" in the loader child). Older bcc (Debian 12's 0.26) reads kfunc__<function>.
 * bcc's own header says which: the macro exists or not. */
#ifndef SW_FENTRY_H
#define SW_FENTRY_H

#ifdef MODULE_KFUNC_PROBE
#define SW_KFUNC(fn)    int kfunc__vmlinux__##fn(u64 *ctx)
#define SW_KRETFUNC(fn) int kretfunc__vmlinux__##fn(u64 *ctx)
#else
#define SW_KFUNC(fn)    int kfunc__##fn(u64 *ctx)
#define SW_KRETFUNC(fn) int kretfunc__##fn(u64 *ctx)
#endif

#endif
