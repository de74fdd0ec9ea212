"""The compiled-probe cache's key and files (collector/probes/progcache.py) and the
instruction handling of collector/probes/bpfobj.py; loading and attaching for real:
tests/privileged/test_probe_cache.py."""
import json
import os

from collector.probes import bpfobj, progcache
from collector.probes.kernel import insn
from collector.probes.loader import Plan

# r1 = map fd 7 (two slots); r0 = 0; exit
PROG = insn(0x18, 1, 1, imm=7) + insn(0, imm=0) + insn(0xB7, 0, imm=0) + insn(0x95)


def _obj(insns=PROG):
    return bpfobj.ProbeObject(
        maps=[{"name": "m", "type": 1, "key_size": 4, "value_size": 8, "max_entries": 16,
               "flags": 0}],
        progs=[{"fn": "f", "name": "f", "type": 5, "attach": 0, "func": None,
                "license": "GPL", "kern_version": 0, "insns": insns, "refs": [(0, 0)]}],
        steps=[{"kind": "tracepoint", "tp": "a:b", "fn": "f", "prog": "f"}],
        handed={"m": 0}, fallbacks=[], reasons=[])


def _plan(tmp_path, cflags=("-DX=1",), source="int x;"):
    src = tmp_path / "bpf"
    src.mkdir(exist_ok=True)
    (src / "p.c").write_text(source)
    (src / "p.h").write_text("/* header */")
    return Plan(str(src / "p.c"), list(cflags), [{"kind": "tracepoint", "tp": "a:b",
                                                   "fn": "f"}], ["m"])


def test_the_key_follows_every_input(tmp_path):
    btf = tmp_path / "btf"
    btf.write_bytes(b"btf one")
    base = progcache.key(_plan(tmp_path), btf)
    assert progcache.key(_plan(tmp_path), btf) == base
    assert progcache.key(_plan(tmp_path, cflags=("-DX=2",)), btf) != base
    assert progcache.key(_plan(tmp_path, source="int y;"), btf) != base
    plan = _plan(tmp_path)
    (tmp_path / "bpf" / "p.h").write_text("/* changed header */")
    assert progcache.key(plan, btf) != base
    (tmp_path / "bpf" / "p.h").write_text("/* header */")
    btf.write_bytes(b"btf two")
    assert progcache.key(plan, btf) != base


def test_an_entry_comes_back_as_stored(tmp_path):
    cache = progcache.Cache(tmp_path / "c", "probe")
    cache.put("k" * 64, _obj())
    got = cache.get("k" * 64)
    assert got == _obj() and cache.problem is None
    assert cache.get("j" * 64) is None and cache.problem is None     # a miss: no problem
    assert os.stat(tmp_path / "c").st_mode & 0o777 == 0o700


def test_a_changed_entry_is_not_used(tmp_path):
    cache = progcache.Cache(tmp_path / "c", "probe")
    cache.put("k" * 64, _obj())
    (path,) = (tmp_path / "c").iterdir()
    entry = json.loads(path.read_text())
    entry["object"]["maps"][0]["max_entries"] = 1 << 20
    path.write_text(json.dumps(entry))
    assert cache.get("k" * 64) is None
    assert "its key or digest does not match" in cache.problem
    path.write_text("{not json")
    assert cache.get("k" * 64) is None and "not used" in cache.problem


def test_a_reference_out_of_range_is_not_used(tmp_path):
    obj = _obj()
    obj.progs[0]["refs"] = [(9, 0)]
    cache = progcache.Cache(tmp_path / "c", "probe")
    cache.put("k" * 64, obj)
    assert cache.get("k" * 64) is None and "out of range" in cache.problem


def test_a_directory_others_may_write_is_not_used(tmp_path):
    d = tmp_path / "c"
    d.mkdir(mode=0o700)
    cache = progcache.Cache(d, "probe")
    cache.put("k" * 64, _obj())
    os.chmod(d, 0o770)
    assert cache.get("k" * 64) is None
    assert cache.problem.endswith("is writable by group or others (mode 770)")
    os.chmod(d, 0o700)
    parent = tmp_path / "open"
    parent.mkdir()
    os.chmod(parent, 0o777)                  # not sticky: anyone could swap the directory
    cache = progcache.Cache(parent / "c", "probe")
    assert cache.get("k" * 64) is None
    assert "is writable by group or others and not sticky" in cache.problem


def test_the_newest_entries_of_a_probe_are_kept(tmp_path):
    cache = progcache.Cache(tmp_path, "probe")
    other = progcache.Cache(tmp_path, "other")
    other.put("o" * 64, _obj())
    for i in range(6):
        cache.put(f"{i}" * 64, _obj())
        os.utime(tmp_path / cache._name(f"{i}" * 64), ns=(i * 10**9, i * 10**9))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == progcache.KEEP_PER_PROBE + 1
    for name, age_s in ((".probe-1-aa.tmp", 7200), (".probe-2-bb.tmp", 60)):
        (tmp_path / name).write_text("half an entry")       # a writer killed mid-write
        mtime = __import__("time").time_ns() - age_s * 10**9
        os.utime(tmp_path / name, ns=(mtime, mtime))
    cache.put("6" * 64, _obj())
    assert not (tmp_path / ".probe-1-aa.tmp").exists()       # an hour old: gone
    assert (tmp_path / ".probe-2-bb.tmp").exists()           # maybe still being written
    assert cache.get("0" * 64) is None and cache.get("5" * 64) is not None
    assert other.get("o" * 64) is not None


def test_tags_ignore_map_fds_and_patch_sets_them():
    other = insn(0x18, 1, 1, imm=9) + PROG[8:]
    assert bpfobj.tags(PROG) == bpfobj.tags(other)
    assert bpfobj.tags(PROG) != bpfobj.tags(PROG[:16] + insn(0xB7, 0, imm=1) + insn(0x95))
    assert bpfobj._map_loads(PROG) == [(0, 1, 7)]
    assert bpfobj.patch(PROG, [(0, 0)], [9]) == other


def test_fentry_program_names_give_their_function():
    assert bpfobj._func_of("kfunc__vmlinux__vfs_write") == "vfs_write"
    assert bpfobj._func_of("kretfunc__do_filp_open") == "do_filp_open"
    assert bpfobj._func_of("kfunc____sys_accept4") == "__sys_accept4"


def test_an_entry_of_another_format_is_a_miss(tmp_path):
    """An entry written by an older surgewatch under the same name (its key, taken alike,
    names the format too): missing fields are a miss with a reason, never an exception."""
    cache = progcache.Cache(tmp_path, "probe")
    cache.put("k" * 64, _obj())
    (path,) = tmp_path.iterdir()
    entry = json.loads(path.read_text())
    for prog in entry["object"]["progs"]:
        del prog["attach"]
    body = json.dumps(entry["object"], sort_keys=True).encode()
    entry["sha256"] = __import__("hashlib").sha256(body).hexdigest()
    path.write_text(json.dumps(entry))
    assert cache.get("k" * 64) is None
    assert "a program without the fields of this format" in cache.problem
