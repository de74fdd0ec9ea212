"""One collector assembled (build) and run (runtime): probes -> host -> aggregate, with the
resets and alerts stages, one interval at a time."""
