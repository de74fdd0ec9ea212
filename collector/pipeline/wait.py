"""Sleeping between drains: one epoll over the probes' ring buffers and the signal
wake-up pipe, so an idle collector wakes once per interval and a signal ends the wait."""
import os
import select


class EventWait:
    """Wait for whichever comes first: an event in a probe's ring buffer (delivered via the
    probe's consume()), a byte on wakeup_fd, or the timeout. Sources without poll_fd()
    (test doubles) are polled in turn instead."""

    def __init__(self, sources, wakeup_fd=None):
        self.sources = list(sources)
        self.epoll, self.by_fd = None, {}
        if not all(hasattr(s, "poll_fd") for s in self.sources):
            return
        self.epoll = select.epoll()
        for src in self.sources:
            fd = src.poll_fd()
            self.by_fd[fd] = src
            self.epoll.register(fd, select.EPOLLIN)
        self.wakeup_fd = wakeup_fd
        if wakeup_fd is not None:
            self.epoll.register(wakeup_fd, select.EPOLLIN)

    def wait(self, timeout_s):
        if self.epoll is None:
            for src in self.sources[:-1]:
                src.poll(0)
            self.sources[-1].poll(timeout_s * 1000)
            return
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
        if self.epoll is not None:
            self.epoll.close()
