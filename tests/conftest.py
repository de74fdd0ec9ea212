"""Every tier: daemons started by one test session share a run lock of their own, so a
session never collides with a production `surgewatch run` (or another session) on the
host. Tests of the lock itself set SURGEWATCH_LOCK_FILE explicitly."""
import os
import tempfile

if "SURGEWATCH_LOCK_FILE" not in os.environ:
    os.environ["SURGEWATCH_LOCK_FILE"] = os.path.join(
        tempfile.gettempdir(), f"surgewatch-test-{os.getpid()}.lock")
