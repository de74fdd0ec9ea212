"""The run lock (collector/commands/process.py acquire_run_lock): one daemon per lock file, released
by the kernel when its holder dies (tests/privileged/test_rel_faults.py kills one)."""
import os
import subprocess
import sys

import pytest

from collector import config
from collector.commands.process import acquire_run_lock
from collector.errors import BadInput


def test_second_holder_refused_with_pid_then_free_after_close(tmp_path):
    path = str(tmp_path / "sub" / "surgewatch.lock")
    held = acquire_run_lock(path)
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)
    with pytest.raises(BadInput) as e:
        acquire_run_lock(path)
    assert str(e.value).startswith(f"another surgewatch run is running (pid {os.getpid()}, "
                                   f"lock {path})")
    held.close()
    acquire_run_lock(path).close()


def test_lock_released_when_holder_is_killed(tmp_path):
    path = str(tmp_path / "surgewatch.lock")
    child = subprocess.Popen([sys.executable, "-c",
                              "import sys,time; from collector.commands.process import acquire_run_lock;"
                              f"l = acquire_run_lock({path!r}); print('held', flush=True);"
                              "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(BadInput, match=f"pid {child.pid}"):
            acquire_run_lock(path)
    finally:
        child.kill()
        child.wait()
    acquire_run_lock(path).close()      # the stale file does not block


def test_env_names_the_lock(tmp_path, monkeypatch):
    path = str(tmp_path / "env.lock")
    monkeypatch.setenv("SURGEWATCH_LOCK_FILE", path)
    acquire_run_lock(config.load().lock_file).close()      # the env seam, read by config
    assert os.path.exists(path)
