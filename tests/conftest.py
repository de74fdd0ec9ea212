"""Every tier: daemons started by one test session share a run lock of their own, so a
session never collides with a production `surgewatch run` (or another session) on the
host. Tests of the lock itself set SURGEWATCH_LOCK_FILE explicitly."""
import os
import tempfile

if "SURGEWATCH_LOCK_FILE" not in os.environ:
    os.environ["SURGEWATCH_LOCK_FILE"] = os.path.join(
        tempfile.gettempdir(), f"surgewatch-test-{os.getpid()}.lock")

# Compiled probes (probes.cache_dir): one cache per session, so each distinct plan is
# compiled by bcc once and later starts load it stored, as a host's daemon does across
# restarts. Tests of the cache itself set SURGEWATCH_PROBE_CACHE explicitly.
if "SURGEWATCH_PROBE_CACHE" not in os.environ:
    import atexit
    import shutil

    _cache = tempfile.mkdtemp(prefix="surgewatch-test-cache-")
    os.environ["SURGEWATCH_PROBE_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, True)
