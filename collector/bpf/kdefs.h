/* Kernel constants and context accessors both probes use (collector/bpf/logwrites.c,
 * resets.c): written once here. Map-using helpers cannot live in a header: bcc rewrites
 * map calls (`map.lookup()`) in the main source file only, so each probe keeps its own
 * one-line health counter. */
#ifndef SURGEWATCH_KDEFS_H
#define SURGEWATCH_KDEFS_H

/* uapi values, stable across kernels (the kernel's own headers are not included) */
#define S_IFMT_ 00170000
#define S_IFREG_ 0100000
#define S_IFSOCK_ 0140000
#define S_IFIFO_ 0010000
#define AF_UNIX_ 1
#define AF_INET_ 2
#define AF_INET6_ 10
#define SOCK_STREAM_ 1
#define IPPROTO_TCP_ 6
#define O_ACCMODE_ 3
#define PF_KTHREAD_ 0x00200000

/* a tracepoint record's field at a byte offset read from its live format */
#define CTX_U64(ctx, off) (*(u64 *)((char *)(ctx) + (off)))
#define CTX_U32(ctx, off) (*(u32 *)((char *)(ctx) + (off)))
#define CTX_S32(ctx, off) (*(s32 *)((char *)(ctx) + (off)))
#define CTX_U16(ctx, off) (*(u16 *)((char *)(ctx) + (off)))

/* argument i of a raw tracepoint (its TP_PROTO, one u64 slot each) */
#define RAW_ARG(ctx, i) CTX_U64(ctx, (i) * 8)

/* a field of a BTF-typed kernel pointer (fentry): a direct load the verifier checks */
#define LOAD(type, p, off) (*(type *)((char *)(p) + (off)))
/* a pointer-sized field of an untyped kernel pointer: a probe read into out */
#define PTR_AT(p, off, out) bpf_probe_read_kernel(&(out), sizeof(out), (char *)(p) + (off))

#endif
