"""Closing attachment fds (perf events, raw tracepoints): a program detaches when its last
one closes, and each close waits for RCU grace periods in the kernel."""
import os
import threading
import time


def close_fds_parallel(fds, timeout_s=5.0):
    """Closing a perf-event fd waits for an RCU grace period in the kernel (tens of ms);
    one after the other, 18 took 1.3 s. os.close releases the GIL, so threads overlap
    the waits."""
    if len(fds) <= 1:
        for fd in fds:
            close_fd(fd)
        return
    threads = [threading.Thread(target=close_fd, args=(fd,), daemon=True) for fd in fds]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))


def close_fd(fd):
    try:
        os.close(fd)
    except OSError:
        pass
