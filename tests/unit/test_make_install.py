"""`make install DESTDIR=...` (the Makefile's install target, without its `setup`
prerequisite, which installs Debian packages): it stages into DESTDIR and says where."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_a_staged_install_names_the_paths_it_wrote(tmp_path):
    dest = tmp_path / "stage"
    res = subprocess.run(["make", "-s", "-o", "setup", "install", f"DESTDIR={dest}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    wrote = [dest / "usr/local/bin/surgewatch", dest / "etc/systemd/system/surgewatch.service",
             dest / "usr/local/share/man/man8/surgewatch.8",
             dest / "usr/local/share/bash-completion/completions/surgewatch"]
    assert all(os.path.lexists(p) for p in wrote)
    said = res.stdout.strip().splitlines()[-1]
    assert said.startswith("installed ") and "systemctl" not in said, said
    for p in wrote:
        assert str(p) in said, said
