"""Robust per-signal baselines: median and MAD of a bounded window of recent intervals.

Pure: numbers in, numbers out; no I/O, no clock. See docs/detection.md.

A RobustWindow keeps the last `size` samples (one per interval) twice: in arrival order
(to know which one leaves) and sorted (for the median, quantiles and MAD). Memory is two
arrays of C doubles, 16 bytes per sample, whatever the values.
"""
from array import array
from bisect import bisect_left, insort
from collections import deque

# MAD * 1.4826 estimates the standard deviation of normally distributed data.
MAD_TO_SIGMA = 1.4826


def _quantile_sorted(values, q):
    """Quantile q (0..1) of an already sorted sequence, linear between closest ranks."""
    n = len(values)
    if n == 0:
        raise ValueError("quantile of no samples")
    pos = q * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return values[lo] + (values[hi] - values[lo]) * frac


class RobustWindow:
    """The last `size` samples, with median, MAD and quantiles."""

    __slots__ = ("size", "_order", "_sorted", "_summary", "_stale")

    def __init__(self, size, samples=()):
        if size < 1:
            raise ValueError(f"window size must be >= 1, got {size!r}")
        self.size = int(size)
        self._order = deque(maxlen=self.size)
        self._sorted = array("d")
        self._summary = None
        self._stale = 0               # samples added since _summary was computed
        for x in samples:
            self.add(x)

    def __len__(self):
        return len(self._order)

    def add(self, x):
        x = float(x)
        if x != x:                      # NaN would break the ordering
            raise ValueError("sample is NaN")
        if len(self._order) == self.size:
            old = self._order[0]
            del self._sorted[bisect_left(self._sorted, old)]
        self._order.append(x)
        insort(self._sorted, x)
        self._stale += 1

    def clear(self):
        self._order.clear()
        del self._sorted[:]
        self._summary = None

    def samples(self):
        """The samples, oldest first."""
        return list(self._order)

    def median(self):
        return _quantile_sorted(self._sorted, 0.5)

    def quantile(self, q):
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within 0..1, got {q!r}")
        return _quantile_sorted(self._sorted, q)

    def mad(self, median=None):
        """Median absolute deviation from the median."""
        m = self.median() if median is None else median
        devs = sorted(abs(x - m) for x in self._sorted)
        return _quantile_sorted(devs, 0.5)

    def summary(self, max_stale=0):
        """Baseline of the window: {n, median, sigma, p98} (sigma = 1.4826 MAD).

        The one computed before is returned while at most max_stale samples were added
        since (the MAD costs a sort; a slowly adapting baseline need not be recomputed
        every interval)."""
        if self._summary is not None and self._stale <= max_stale:
            return self._summary
        m = self.median()
        self._summary = Baseline(n=len(self), median=m, sigma=MAD_TO_SIGMA * self.mad(m),
                                 p98=self.quantile(0.98))
        self._stale = 0
        return self._summary


class Baseline:
    """A summary of a window: what an interval's rate is compared with."""

    __slots__ = ("n", "median", "sigma", "p98")

    def __init__(self, n, median, sigma, p98):
        self.n, self.median, self.sigma, self.p98 = n, median, sigma, p98

    def __repr__(self):
        return (f"Baseline(n={self.n}, median={self.median:g}, sigma={self.sigma:g}, "
                f"p98={self.p98:g})")

    def threshold(self, k, z, burst_factor, floor):
        """The rate above which an interval counts as abnormal: the largest of the floor,
        k x median, median + z x sigma and burst_factor x p98."""
        return max(floor, k * self.median, self.median + z * self.sigma,
                   burst_factor * self.p98)
