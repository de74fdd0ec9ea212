"""Reading bcc maps the same way in every probe: strings, drains, health counters."""
import ctypes


def cstr(raw):
    """A fixed-size C char array as text (up to the first NUL, bad bytes replaced)."""
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


def drain_table(table):
    """Lookup-and-delete every entry: in batches when the kernel has it, else one by one."""
    try:
        return list(table.items_lookup_and_delete_batch())
    except Exception:  # bcc raises bare Exception where the kernel lacks batch ops
        items = list(table.items())
        for k, _ in items:
            try:
                del table[k]
            except KeyError:
                pass
        return items


class HealthCounters:
    """Deltas of a per-CPU array of event counters (lost events, full maps...)."""

    def __init__(self, size):
        self._seen = [0] * size

    def delta(self, table):
        now = [sum(table[ctypes.c_int(i)]) for i in range(len(self._seen))]
        out = [n - s for n, s in zip(now, self._seen)]
        self._seen = now
        return out
