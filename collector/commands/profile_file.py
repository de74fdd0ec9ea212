"""Profile files (JSON, format in docs/detection.md): `record` writes them, `compare`
and `run`'s [alerts] profile read them, checked (collector/aggregate/profile.py)."""
import json
import os
import sys

from collector.aggregate.profile import check_profile
from collector.errors import BadInput


def write_profile(doc, path):
    """Write doc as JSON to path ("-": stdout); a file is replaced atomically."""
    text = json.dumps(doc, indent=1, sort_keys=False, allow_nan=False) + "\n"
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise BadInput(f"{path}: cannot write the profile: {e.strerror or e}") from None


def read_profile(path):
    """The profile in path, checked; BadInput (one line, exit 2) when it is not usable."""
    try:
        with open(path, "rb") as f:
            data = f.read(64 << 20)
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a surgewatch profile (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}: corrupt profile: invalid JSON at line {e.lineno} "
                       f"column {e.colno} ({e.msg})") from None
    problem = check_profile(doc, path)
    if problem:
        raise BadInput(problem)
    return doc
