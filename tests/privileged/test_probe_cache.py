"""Compiled probes kept between starts (probes.cache_dir; collector/probes/progcache.py,
bpfobj.py): a stored start hands the daemon the same programs as bcc's compile (the
kernel's own tag of every program, the maps' shapes, the attachments), counts exactly,
and a cache a local user could have written is not used (docs/operations.md)."""
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from collector.probes import loader, registry
from collector.probes.libbpf import map_info, prog_info
from tests.support.daemon import Daemon
from tests.support.records import writes_by_path

LINE = b"stored programs line\n"
NOBODY = 65534


def _load(name, cache, **kwargs):
    probe = registry.probe_class(name)(**kwargs)
    return loader.Pending(name, probe.load_kwargs(), 120, cache_dir=str(cache)).wait()


def _shape(h):
    """Everything the daemon gets, by kernel identity: each program's type, kernel name and
    tag (a hash of its instructions), each handed map's type and sizes, the attachments."""
    progs = {n: prog_info(fd) for n, fd in h.progs.items()}
    maps = {}
    for n, m in h.maps.items():
        i = map_info(m.fd)
        maps[n] = (i.type, i.key_size, i.value_size, i.max_entries, i.map_flags, i.name)
    return progs, maps, sorted(h.links), h.info["fallbacks"], h.info["state"]


# "auto" is fentry where the kernel allows it (the VM), the tracepoints elsewhere
@pytest.mark.parametrize("name,kwargs", [
    ("logwrites", {"hook": "auto"}), ("logwrites", {"hook": "tracepoints"}),
    ("logwrites", {"hook": "raw"}), ("resets", {"hook": "auto"}),
    ("resets", {"hook": "tracepoints"})])
def test_a_stored_start_hands_over_what_bcc_compiled(tmp_path, name, kwargs):
    cache = tmp_path / "cache"
    first = _load(name, cache, **kwargs)
    try:
        assert first.info["programs"] == "compiled"
        compiled = _shape(first)
    finally:
        first.close()
    entries = os.listdir(cache)
    assert len(entries) == 1 and entries[0].startswith(f"{name}-"), entries
    assert os.stat(cache).st_mode & 0o777 == 0o700
    assert os.stat(cache / entries[0]).st_mode & 0o777 == 0o600
    second = _load(name, cache, **kwargs)
    try:
        assert second.info["programs"] == "stored"
        assert _shape(second) == compiled
    finally:
        second.close()


def test_a_changed_setting_is_another_entry(tmp_path):
    cache = tmp_path / "cache"
    for max_keys, expect in ((4096, "compiled"), (8192, "compiled"), (4096, "stored")):
        h = _load("resets", cache, max_owners=max_keys)
        h.close()
        assert h.info["programs"] == expect, (max_keys, h.info["programs"])
    assert len(os.listdir(cache)) == 2


def test_a_daemon_counts_exactly_on_stored_programs(tmp_path):
    cache = tmp_path / "cache"
    metas = []
    for run in ("first", "second"):
        d = Daemon(tmp_path / run, env={"SURGEWATCH_PROBE_CACHE": str(cache)})
        try:
            metas.append(d.wait_meta())
            log = d.write_between_intervals("stored.log", 2345, LINE)
        finally:
            rc = d.stop()
        assert rc == 0, d.err
        assert writes_by_path(d.records, log) == (2345, 2345 * len(LINE))
    programs = [{p: m["probes"][p].get("programs") for p in ("logwrites", "resets")}
                for m in metas]
    assert programs == [{"logwrites": "compiled", "resets": "compiled"},
                        {"logwrites": "stored", "resets": "stored"}], programs


def _as_nobody(*argv):
    subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                    *argv], check=True)


def test_a_cache_a_local_user_made_is_not_used(tmp_path):
    """A world-writable sticky directory (as /tmp) where an unprivileged user made the
    cache directory first, with an entry of their own under the right name."""
    shared = Path(tempfile.mkdtemp(prefix="sw-shared-"))    # in /tmp: reachable by all
    try:
        os.chmod(shared, 0o1777)
        cache = shared / "probes"
        _as_nobody("mkdir", "-m", "0755", str(cache))
        d = Daemon(tmp_path / "run", env={"SURGEWATCH_PROBE_CACHE": str(cache)})
        try:
            meta = d.wait_meta()
            log = d.write_between_intervals("hostile.log", 321, LINE)
        finally:
            rc = d.stop()
        left = os.listdir(cache)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    assert rc == 0, d.err
    assert meta["probes"]["logwrites"]["programs"] == "compiled"
    assert writes_by_path(d.records, log) == (321, 321 * len(LINE))
    lines = [ln for ln in d.err.splitlines() if "not used" in ln]
    assert lines and all(ln.startswith("surgewatch: ") and f"is owned by uid {NOBODY}, not "
                         "by us; compiling with bcc" in ln for ln in lines), d.err
    assert left == []                        # nothing of ours written into it


def test_a_damaged_or_swapped_entry_is_compiled_again(tmp_path):
    cache = tmp_path / "cache"
    _load("resets", cache).close()
    (entry,) = os.listdir(cache)
    path = cache / entry
    body = json.loads(path.read_text())
    body["object"]["progs"][0]["insns"] = body["object"]["progs"][1]["insns"]
    path.write_text(json.dumps(body))        # a program swapped: the digest no longer fits
    h = _load("resets", cache)
    h.close()
    assert h.info["programs"] == "compiled"
    assert _load_close("resets", cache) == "stored"      # stored again, whole
    os.chmod(path, 0o666)                    # writable by others: not trusted
    assert _load_close("resets", cache) == "compiled"
    os.chmod(path, 0o600)
    os.unlink(path)
    os.symlink(tmp_path / "elsewhere.json", path)        # O_NOFOLLOW: not followed
    assert _load_close("resets", cache) == "compiled"


def _load_close(name, cache):
    h = _load(name, cache)
    h.close()
    return h.info["programs"]
