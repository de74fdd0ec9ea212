"""tests/e2e: real servers (Debian's HAProxy, nginx, Prometheus) in network namespaces the
tests make, watched by the real surgewatch. Root only; in CI they must not skip."""
import os
import uuid

import pytest

from tests.e2e.topology import Topology, missing_tools


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end to end: real servers in network namespaces")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    if os.environ.get("SURGEWATCH_REQUIRE_PRIVILEGED"):
        raise pytest.UsageError("e2e tests need root (SURGEWATCH_REQUIRE_PRIVILEGED is set)")
    skip = pytest.mark.skip(reason="needs root: run `make test` as root")
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(skip)


def _require_tools():
    missing = missing_tools()
    if missing:
        if os.environ.get("SURGEWATCH_REQUIRE_PRIVILEGED"):
            pytest.fail(f"missing {', '.join(missing)}: run `make setup`")
        pytest.skip(f"missing {', '.join(missing)}: run `make setup`")


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    """frontend / lb / backend namespaces, nginx in backend, HAProxy (3 s idle timeout,
    resets on timeout) in lb; everything removed afterwards, also on failure."""
    _require_tools()
    workdir = tmp_path_factory.mktemp("incident")
    # per-run subnets and unit names (frontend-<tag>.service): another run on the same
    # host (surgewatch sees every namespace) cannot be mistaken for this one
    tag = uuid.uuid4().hex[:6]
    topo = Topology(workdir, idle_timeout_s=3, tag=tag, unit_suffix=f"-{tag}")
    try:
        topo.up()
        topo.start_backend()
        topo.start_lb()
        topo.workdir = str(workdir)
        yield topo
    finally:
        topo.down()
