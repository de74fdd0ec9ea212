"""Helpers shared by the test tiers, the benchmarks and the soak (docs/testing.md):

- daemon.py: `Daemon`, a real `surgewatch run` child for a test (config, free port, its
  records on a pipe read by a thread, stop by pid, stderr);
- procfs.py: a process's RSS, PSS, CPU seconds and open fds from /proc;
- records.py: sums over the records a daemon wrote (writes per path, losses);
- loopback.py: a free loopback port, the reset server/client pair;
- writers.py: write N known log lines, the logwriter workload under a name of its own.
"""
