"""Reading surgewatch's history back from a Prometheus server: `/api/v1/query_range`
over plain HTTP(S) + JSON, standard library only (urllib, ssl, json).

It sits in records/ next to source.py: a Prometheus server is one more store of the
same history (the counters every host's `surgewatch run` exported), read back to build
a profile. Errors are one line each (docs/detection.md, "Fleet profiles"):
- the server cannot be reached or answers HTTP errors other than a bad query: exit 3
  (PrometheusUnavailable: retry, or fix the URL, token or CA);
- Prometheus rejects the query (HTTP 400/422, its own message): exit 2 (BadInput).
"""
import http.client
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

from collector.errors import BadInput, SurgewatchError

EXIT_UNAVAILABLE = 3
MAX_ANSWER = 256 << 20


class PrometheusUnavailable(SurgewatchError):
    """The Prometheus server did not answer the API call (network, TLS, HTTP status)."""

    exit_code = EXIT_UNAVAILABLE


class PrometheusAPI:
    def __init__(self, url, bearer_token_file=None, ca_file=None, timeout=60.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadInput(f"--from-prometheus {url!r}: not an http:// or https:// URL; give "
                           "the server's base URL, e.g. http://prometheus:9090")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Accept": "application/json",
                        "Content-Type": "application/x-www-form-urlencoded"}
        if bearer_token_file:
            try:
                with open(bearer_token_file, encoding="utf-8") as f:
                    token = f.read().strip()
            except (OSError, UnicodeDecodeError) as e:
                raise BadInput(f"--bearer-token-file {bearer_token_file}: cannot read: "
                               f"{getattr(e, 'strerror', None) or e}") from None
            if not token:
                raise BadInput(f"--bearer-token-file {bearer_token_file}: empty; put the "
                               "token in it")
            self.headers["Authorization"] = f"Bearer {token}"
        self.context = None
        if parts.scheme == "https" or ca_file:
            try:
                self.context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as e:
                raise BadInput(f"--ca-file {ca_file}: not a usable CA certificate file: "
                               f"{getattr(e, 'strerror', None) or e}") from None

    def query_range(self, expr, start, end, step):
        """The `data.result` list of a matrix answer for expr over [start, end]."""
        form = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}",
                                       "end": f"{end:.3f}", "step": f"{step:g}"})
        data = self._post("/api/v1/query_range", form.encode())
        result = data.get("result") if isinstance(data, dict) else None
        if data.get("resultType") != "matrix" or not isinstance(result, list):
            raise PrometheusUnavailable(f"{self.url}: query_range answered a "
                                        f"{data.get('resultType')!r}, not a matrix; is this "
                                        "a Prometheus API?")
        return result

    def _post(self, path, body):
        req = urllib.request.Request(self.url + path, data=body, headers=self.headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout,
                                        context=self.context) as r:
                raw = r.read(MAX_ANSWER)
        except urllib.error.HTTPError as e:
            raise self._http_error(e) from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise PrometheusUnavailable(
                    f"{self.url}: TLS certificate not trusted ({reason.verify_message}); "
                    "give its CA with --ca-file") from None
            why = getattr(reason, "strerror", None) or reason
            raise PrometheusUnavailable(f"cannot reach Prometheus at {self.url}: {why}; check "
                                        "the URL and that the server runs") from None
        except (OSError, ValueError, http.client.HTTPException) as e:   # timeouts, resets,
            # TLS failures, a connection closed mid-answer
            raise PrometheusUnavailable(f"cannot reach Prometheus at {self.url}: "
                                        f"{getattr(e, 'strerror', None) or e}; check the URL "
                                        "and that the server runs") from None
        doc = self._json(raw)
        if doc is None or doc.get("status") != "success":
            raise PrometheusUnavailable(f"{self.url}{path}: not a Prometheus API answer; give "
                                        "the server's base URL (no /api/v1)")
        return doc.get("data") or {}

    def _json(self, raw):
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        return doc if isinstance(doc, dict) else None

    def _http_error(self, e):
        try:
            doc = self._json(e.read(1 << 20))
        except OSError:
            doc = None
        msg = (doc or {}).get("error")
        if e.code in (400, 422) and isinstance(msg, str):
            return BadInput(f"Prometheus rejected the query: {msg}; fix --match")
        hint = {401: "give a valid token with --bearer-token-file",
                403: "give a token allowed to query with --bearer-token-file",
                404: "give the server's base URL (no /api/v1)"}.get(
            e.code, "retry when the server is healthy")
        detail = f": {msg}" if isinstance(msg, str) else ""
        return PrometheusUnavailable(f"Prometheus at {self.url} answered HTTP {e.code} "
                                     f"{e.reason}{detail}; {hint}")
