"""Machine-readable `surgewatch snapshot --json` output (documented in docs/stream.md)."""
import io
import json
import sys

from collector.records.model import SCHEMA_VERSION, clean_text


def _clean(obj):
    if isinstance(obj, str):
        return clean_text(obj)
    if isinstance(obj, dict):
        return {clean_text(k) if isinstance(k, str) else k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _path(p):
    return {"path": p.path, "pids": list(p.pids), "writes": p.writes, "bytes": p.bytes,
            "writes_per_s": p.writes_per_s, "bytes_per_s": p.bytes_per_s}


def _service(s):
    out = {"service": s.service, "pids": list(s.pids), "comms": list(s.comms),
           "writes": s.writes, "bytes": s.bytes, "writes_per_s": s.writes_per_s,
           "bytes_per_s": s.bytes_per_s, "share": s.share,
           "paths": [_path(p) for p in s.paths]}
    if s.folded:
        out["folded"] = s.folded
    return out


def snapshot_json(window, meta, top=None):
    """The snapshot as a JSON-ready dict.

    window: aggregate.logrates.Window; meta: the run's meta record (model.meta_record);
    top: keep that many services and fold the rest into "(others)" (default: all).
    """
    return _clean({
        "v": SCHEMA_VERSION,
        "host": meta["host"],
        "started": meta["ts"],
        "duration_s": window.duration_s,
        "interval_s": meta["interval"],
        "services": [_service(s) for s in window.services(top)],
        "stats": window.stats() or {},
    })


def dumps(doc, indent=2):
    """doc as JSON text: always valid (hostile strings escaped by json, NaN refused)."""
    return json.dumps(_clean(doc), ensure_ascii=False, allow_nan=False, indent=indent)


def write_json(doc, stream=None, indent=2):
    """Write doc as UTF-8 JSON plus a newline to a stream (text or binary; default stdout)."""
    stream = stream if stream is not None else sys.stdout
    data = (dumps(doc, indent) + "\n").encode("utf-8")
    if isinstance(stream, io.TextIOBase):
        buf = getattr(stream, "buffer", None)
        if buf is None:                      # e.g. io.StringIO
            stream.write(data.decode("utf-8"))
            return
        stream.flush()
        stream = buf
    stream.write(data)
    stream.flush()
