"""The idle-before-reset histogram's buckets, as collector/bpf/resets.c fills them.

Bucket 0 is < 1 ms, bucket i (1 .. n-2) is [2^(i-1), 2^i) ms, the last bucket is
>= 2^(n-2) ms. With n = 24 the labelled range runs from 1 ms to about 70 min (1 h lands
in bucket 22). Pure; the reset tallies (resets.py), the idle timeout named
(idletimeout.py), alerts' contributors (signals.py) and every view share it.
"""

IDLE_BUCKETS = 24            # as collector/bpf/resets.c (SW_IDLE_BUCKETS in common.h)


def bucket_bounds_ms(b, nbuckets):
    """[low, high) in ms of bucket b; high is None for the last, open bucket."""
    if b == 0:
        return 0, 1
    return 2 ** (b - 1), (2 ** b if b < nbuckets - 1 else None)


def bucket_of(idle_ms, nbuckets):
    if idle_ms < 1:
        return 0
    return min(int(idle_ms).bit_length(), nbuckets - 1)


def fmt_ms(ms):
    if ms < 1000:
        return f"{ms:g}ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.3g}s"
    m = s / 60
    if m < 60:
        return f"{m:.3g}m"
    return f"{m / 60:.3g}h"


def bucket_label(b, nbuckets):
    lo, hi = bucket_bounds_ms(b, nbuckets)
    if b == 0:
        return "<1ms"
    if hi is None:
        return f">={fmt_ms(lo)}"
    return f"{fmt_ms(lo)}-{fmt_ms(hi)}"


def idle_buckets(nbuckets):
    """What each index of an `idle_hist` array counts, for a JSON reader:
    [{"bucket", "lo_ms", "hi_ms" (null: no upper bound), "label"}], low bound included,
    high bound excluded."""
    out = []
    for b in range(nbuckets):
        lo, hi = bucket_bounds_ms(b, nbuckets)
        out.append({"bucket": b, "lo_ms": lo, "hi_ms": hi, "label": bucket_label(b, nbuckets)})
    return out
