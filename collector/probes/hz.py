"""The kernel's CONFIG_HZ (the resets probe turns jiffies stamps into idle time): from the
kernel's published config, else measured from /proc/timer_list."""
import gzip
import os
import platform
import re
import time

from collector.errors import ProbeUnavailable


def kernel_hz(release=None, root="/"):
    """The kernel's CONFIG_HZ: from its config when published, else measured."""
    release = release or platform.release()
    for path, opener in ((os.path.join(root, "proc/config.gz"), gzip.open),
                         (os.path.join(root, f"boot/config-{release}"), open)):
        try:
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        return int(line.split("=", 1)[1])
        except OSError:
            continue
    return _measure_hz(os.path.join(root, "proc/timer_list"))


def _measure_hz(timer_list):
    def sample():
        with open(timer_list) as f:
            text = f.read()
        m = re.search(r"^jiffies: (\d+)", text, re.M)
        if not m:
            raise ProbeUnavailable("resets probe: cannot find the kernel's HZ "
                                   "(no /proc/config.gz, /boot/config-*, /proc/timer_list)")
        return int(m.group(1)), time.monotonic()
    try:
        j0, t0 = sample()
        time.sleep(0.2)
        j1, t1 = sample()
    except OSError as e:
        raise ProbeUnavailable(f"resets probe: cannot find the kernel's HZ: {e}") from e
    measured = (j1 - j0) / (t1 - t0)
    return min((100, 250, 300, 1000), key=lambda hz: abs(hz - measured))
