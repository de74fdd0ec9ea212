"""Compile the C workloads once per test session (gcc comes with the test set-up, tests/packages.txt)."""
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(name, outdir):
    out = Path(outdir) / name
    if not out.exists():
        subprocess.run(["gcc", "-O2", "-o", str(out), str(HERE / f"{name}.c")], check=True)
    return str(out)
