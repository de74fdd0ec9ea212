"""Connection inventory across network namespaces (collector/host/sockdiag.py), no root."""
import os

from collector.errors import EnvironmentProblem
from collector.host import sockdiag


class FakeProcFS:
    def __init__(self, root, pids):
        self.root, self._pids = str(root), pids

    def pids(self):
        return list(self._pids)


def _ns_file(root, pid):
    d = root / str(pid) / "ns"
    d.mkdir(parents=True)
    (d / "net").write_text("")
    return str(d / "net")


def test_one_path_per_namespace_and_gone_processes_skipped(tmp_path):
    a = _ns_file(tmp_path, 10)
    (tmp_path / "11" / "ns").mkdir(parents=True)
    os.link(a, tmp_path / "11" / "ns" / "net")
    b = _ns_file(tmp_path, 12)
    found = sockdiag.network_namespaces(FakeProcFS(tmp_path, [10, 11, 12, 13]))  # 13 is gone
    paths = set(found.values())
    assert a in paths and b in paths
    assert str(tmp_path / "11" / "ns" / "net") not in paths
    assert os.stat("/proc/self/ns/net").st_ino in found


def test_all_namespaces_keeps_own_and_skips_unenterable(tmp_path, monkeypatch):
    _ns_file(tmp_path, 10)
    calls = []

    def fake_in(path, dump):
        calls.append(path)
        raise EnvironmentProblem("cannot enter")

    monkeypatch.setattr(sockdiag, "tcp_connections_in", fake_in)
    conns = sockdiag.tcp_connections_all_namespaces(FakeProcFS(tmp_path, [10]),
                                                    dump=lambda: ["own"])
    assert conns == ["own"]
    assert calls == [str(tmp_path / "10" / "ns" / "net")]


def test_tcp_connections_in_reports_a_namespace_it_cannot_open(tmp_path):
    try:
        sockdiag.tcp_connections_in(str(tmp_path / "missing"), dump=lambda: [])
    except EnvironmentProblem as e:
        assert "missing" in str(e)
    else:
        raise AssertionError("expected EnvironmentProblem")
