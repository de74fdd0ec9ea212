"""The interval loop: drain on the interval's clock, and between drains sleep in one
epoll over the probes' ring buffers and the signal wake-up pipe, so an idle collector
wakes once per interval and a signal ends the wait."""
import os
import select


def run_loop(collector, duration_s, interval_s, on_interval, on_tick=None, tick_s=0.25,
             should_stop=lambda: False, wakeup_fd=None):
    """Drain the collector every interval_s until duration_s (None: until should_stop()).
    Starts the first interval unless the caller did (begin() before announcing the
    probes, so that nothing written after the announcement is dropped as a load-time
    count).

    Between drains it sleeps in one epoll over the probes' ring buffers (and
    wakeup_fd, the signal wake-up pipe, so a signal ends the wait at once): an idle
    daemon wakes once per interval. tick_s (None: never) bounds the wait for callers
    whose on_tick must run on a clock, such as the live table's countdown."""
    if not collector.begun:
        collector.begin()
    start = collector.boundary
    deadline = start + interval_s
    waiter = EventWait(collector.stages, wakeup_fd)
    try:
        while True:
            now = collector.clock()
            if now >= deadline:
                on_interval(collector.interval())
                deadline += interval_s
                while deadline <= now:        # fell behind: skip, do not burst
                    deadline += interval_s
                if duration_s is not None and now - start >= duration_s - interval_s / 100:
                    return
            if should_stop():
                on_interval(collector.interval())
                return
            if on_tick:
                on_tick(now - start)
            wait = deadline - collector.clock()
            if tick_s is not None:
                wait = min(wait, tick_s)
            waiter.wait(max(0.0, wait))
    finally:
        waiter.close()


class EventWait:
    """Wait for whichever comes first: an event in a probe's ring buffer (delivered via the
    probe's consume()), a byte on wakeup_fd, or the timeout."""

    def __init__(self, sources, wakeup_fd=None):
        self.sources = list(sources)
        self.by_fd = {}
        self.epoll = select.epoll()
        for src in self.sources:
            fd = src.poll_fd()
            self.by_fd[fd] = src
            self.epoll.register(fd, select.EPOLLIN)
        self.wakeup_fd = wakeup_fd
        if wakeup_fd is not None:
            self.epoll.register(wakeup_fd, select.EPOLLIN)

    def wait(self, timeout_s):
        for fd, _ in self.epoll.poll(timeout_s):
            src = self.by_fd.get(fd)
            if src is not None:
                src.consume()
            else:
                try:
                    os.read(fd, 512)          # the signal's byte; its handler already ran
                except (BlockingIOError, InterruptedError):
                    pass

    def close(self):
        self.epoll.close()
