"""The Debian package's facts that live beside other copies: the conffile made from the
config block of docs/operations.md, the version, the Python dependencies, the loader
child's import path from a private directory."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from collector import __version__
from collector.probes.loader import child_env
from tests.unit.test_operations_doc import config_block, keys

ROOT = Path(__file__).resolve().parents[2]
DEBIAN = ROOT / "debian"


def conffile():
    return subprocess.run(["sh", str(DEBIAN / "mkconffile"), str(ROOT / "docs" / "operations.md")],
                          capture_output=True, text=True, check=True).stdout


def test_the_conffile_as_installed_changes_nothing():
    assert tomllib.loads(conffile()) == {}


def test_the_conffile_uncommented_is_every_key_at_its_default():
    text = re.sub(r"(?m)^#(?=[A-Za-z_\[])", "", conffile())
    table = tomllib.loads(text)
    assert table == config_block()
    assert keys(table) == keys(config_block())


def test_the_package_version_is_the_collectors():
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    assert re.match(r"surgewatch \(([^)]+)\)", first).group(1) == __version__


def test_every_python_dependency_is_a_debian_package_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    control = (DEBIAN / "control").read_text()
    depends = control[control.index("\nPackage: surgewatch"):]
    depends = depends[depends.index("Depends:"):depends.index("Recommends:")]
    for dep in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9_-]+", dep).group(0).lower()
        assert f"python3-{name} " in depends or f"python3-{name}," in depends, \
            f"pyproject.toml depends on {name}; debian/control has no python3-{name}"


def test_the_loader_child_imports_collector_from_where_we_do():
    env = child_env({"PATH": "/usr/bin", "PYTHONPATH": "/elsewhere"})
    home = str(Path(sys.modules["collector"].__file__).resolve().parents[1])
    assert env["PYTHONPATH"] == f"{home}:/elsewhere"
    assert env["PATH"] == "/usr/bin"
    assert child_env({})["PYTHONPATH"] == home
