"""A real Prometheus (Debian's package) for a test: started on a free loopback port with a
scrape config for one surgewatch target (1 s scrapes), its query API, stopped by pid."""
import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.support.loopback import free_port

PROMETHEUS = "/usr/bin/prometheus"

SCRAPE = """
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: surgewatch
    scrape_interval: 1s
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


class Prometheus:
    def __init__(self, tmp_path, target_port):
        self.port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(SCRAPE.format(port=target_port))
        self.log = open(tmp_path / "prometheus.log", "w+")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return r.read().decode()

    def wait_ready(self, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, self.output()
            try:
                self.get("/-/ready")
                return
            except OSError:
                time.sleep(0.2)
        pytest.fail("prometheus not ready: " + self.output())

    def query(self, expr):
        body = json.loads(self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def output(self):
        self.log.seek(0)
        return self.log.read()[-4000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
