"""A client-side load loop that counts every request, the way users would see them.

Failures are counted here, at the client, not in HAProxy's log: HAProxy closes
a reused client connection without logging the request when the server dies
before answering.  Each thread keeps one keep-alive connection, as real
clients do (that reuse is where those silent closes happen), and opens a new
one after any error.  A failed request is never retried, with one exception a
loop may opt into (`retry_reused_close`): a GET whose *reused* keep-alive
connection was closed (or reset) before any byte of the response is retried once on a
new connection, as RFC 9112 section 9.3.1 lets clients do and browsers and
client libraries do.  Reloading nginx or HAProxy closes idle keep-alive
connections that way.  Such a request counts as ``retried`` (not ``ok``) when
the retry succeeded, so the figure stays visible; any other failure, or a
close on a fresh connection, still counts as a failure.
"""

from __future__ import annotations

import http.client
import ipaddress
import math
import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from urllib.parse import urlsplit

from lab.errors import LabError
from wsgi_drain._compat import StrEnum


class Outcome(StrEnum):
    OK = "ok"  # 200
    RETRIED = "retried"  # 200 after one retry: the reused connection closed before any byte
    HTTP_ERROR = "http_error"  # any other status
    REFUSED = "refused"  # connect() refused
    RESET = "reset"  # connection reset / broken pipe
    CLOSED = "closed"  # closed without (a whole) answer
    TIMEOUT = "timeout"
    OTHER = "other"


@dataclass(frozen=True)
class Sample:
    """One request: when it started (time.monotonic), how long it took, how it ended."""

    start: float
    latency: float
    outcome: Outcome
    status: int | None = None
    pid: int | None = None  # X-Pid: the daemon process that answered
    # Closed before any byte of the response (http.client's RemoteDisconnected).
    closed_before_answer: bool = False
    # X-Loaded-At: when the answering process finished importing the app
    # (time.monotonic, the same clock as `start`): a request begun earlier waited for it.
    loaded_at: float | None = None


@dataclass(frozen=True)
class LoadSummary:
    counts: dict[str, int]  # by Outcome value, every outcome present
    total: int
    failures: int
    p50: float
    p99: float
    max: float
    pids: frozenset[int]


def _loopback_target(url: str) -> tuple[str, int, str]:
    """(host, port, path?query) of a plain-http loopback URL; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http:// URL: {url!r}")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the load loop only targets loopback, not {host!r}")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return host, parts.port or 80, path


def classify(err: BaseException) -> Outcome:
    """The outcome of a request that raised `err`."""
    # RemoteDisconnected is a ConnectionResetError too: test it first.
    if isinstance(err, (http.client.RemoteDisconnected, http.client.BadStatusLine)):
        return Outcome.CLOSED
    if isinstance(err, http.client.IncompleteRead):
        return Outcome.CLOSED
    if isinstance(err, ConnectionRefusedError):
        return Outcome.REFUSED
    if isinstance(err, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return Outcome.RESET
    if isinstance(err, (TimeoutError, socket.timeout)):
        return Outcome.TIMEOUT
    return Outcome.OTHER


def request_once(conn: http.client.HTTPConnection, path: str) -> tuple[Sample, bool]:
    """Send one GET on `conn`; the sample and whether the connection must be dropped."""
    start = time.monotonic()
    answered = False
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        answered = True
        resp.read()
    except (OSError, http.client.HTTPException) as err:
        # Closed before any answer: a FIN (RemoteDisconnected), or a reset when
        # the request reached a connection the server had just closed (nginx's
        # reload closing idle keep-alive connections races the next request).
        early = isinstance(err, http.client.RemoteDisconnected) or (
            not answered and isinstance(err, (ConnectionResetError, BrokenPipeError))
        )
        return Sample(start, time.monotonic() - start, classify(err), None, None, early), True
    pid_header = resp.getheader("X-Pid")
    pid = int(pid_header) if pid_header and pid_header.isdigit() else None
    loaded_at = _float_or_none(resp.getheader("X-Loaded-At"))
    outcome = Outcome.OK if resp.status == 200 else Outcome.HTTP_ERROR
    sample = Sample(start, time.monotonic() - start, outcome, resp.status, pid, loaded_at=loaded_at)
    return sample, resp.will_close


def _float_or_none(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    # Nearest rank: the smallest value with at least `fraction` of all at or below it.
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(samples: list[Sample]) -> LoadSummary:
    counts = {o.value: 0 for o in Outcome}
    for s in samples:
        counts[s.outcome.value] += 1
    latencies = sorted(s.latency for s in samples)
    return LoadSummary(
        counts=counts,
        total=len(samples),
        failures=len(samples) - counts[Outcome.OK.value] - counts[Outcome.RETRIED.value],
        p50=_percentile(latencies, 0.50),
        p99=_percentile(latencies, 0.99),
        max=latencies[-1] if latencies else 0.0,
        pids=frozenset(s.pid for s in samples if s.pid is not None),
    )


class LoadLoop:
    """`clients` threads sending GET `url` until `max_requests` or `max_seconds`.

    Both bounds are required so a loop can never run away.  Each thread waits
    `pause` seconds after each request: 4 clients with pause=0.055 make about
    70 req/s against the lab, the design's reference load.  `request_timeout`
    bounds one request (and therefore how long stop() may wait).
    """

    def __init__(
        self,
        url: str,
        *,
        max_requests: int,
        max_seconds: float,
        clients: int = 4,
        pause: float = 0.055,
        request_timeout: float = 30.0,
        retry_reused_close: bool = False,
    ) -> None:
        self.host, self.port, self.path = _loopback_target(url)
        if max_requests < 1 or max_seconds <= 0 or clients < 1:
            raise ValueError("max_requests, max_seconds and clients must be positive")
        self.url = url
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.clients = clients
        self.pause = pause
        self.request_timeout = request_timeout
        self.retry_reused_close = retry_reused_close
        self._samples: list[Sample] = []
        self._sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._end = 0.0

    def start(self) -> None:
        if self._threads:
            raise LabError("this LoadLoop was already started")
        self._end = time.monotonic() + self.max_seconds
        self._threads = [
            threading.Thread(target=self._run, name=f"lab-load-{i}", daemon=True)
            for i in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()

    def _claim(self) -> bool:
        with self._lock:
            if self._stop.is_set() or self._sent >= self.max_requests:
                return False
            if time.monotonic() >= self._end:
                return False
            self._sent += 1
            return True

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        served = 0  # requests answered on `conn`: above 0 it is a reused connection
        try:
            while self._claim():
                if conn is None:
                    conn = http.client.HTTPConnection(
                        self.host, self.port, timeout=self.request_timeout
                    )
                    served = 0
                sample, drop = request_once(conn, self.path)
                if self.retry_reused_close and served and sample.closed_before_answer:
                    conn.close()
                    conn = http.client.HTTPConnection(
                        self.host, self.port, timeout=self.request_timeout
                    )
                    served = 0
                    retry, drop = request_once(conn, self.path)
                    ok = retry.outcome == Outcome.OK
                    sample = retry if not ok else Sample(
                        sample.start, time.monotonic() - sample.start, Outcome.RETRIED,
                        retry.status, retry.pid,
                    )  # fmt: skip
                served += 1
                with self._lock:
                    self._samples.append(sample)
                if drop:
                    conn.close()
                    conn = None
                if self.pause > 0 and self._stop.wait(self.pause):
                    break
        finally:
            if conn is not None:
                conn.close()

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the loop ends by its own bounds; True when every thread ended."""
        limit = self.max_seconds + self.request_timeout + 1.0 if timeout is None else timeout
        end = time.monotonic() + limit
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        return not self.running()

    def stop(self, timeout: float | None = None) -> None:
        """Stop sending and join the threads (bounded: by default request_timeout + 1 s).

        A request in flight is let finish and counted.  Raises LabError when a
        thread is still running at the end (its requests are still counted).
        """
        self._stop.set()
        if not self.wait(self.request_timeout + 1.0 if timeout is None else timeout):
            raise LabError("load threads still running after stop()")

    def results(self) -> list[Sample]:
        """Every request so far, in completion order."""
        with self._lock:
            return list(self._samples)

    def summary(self) -> LoadSummary:
        return summarize(self.results())


def slow_request(url: str, seconds: float, timeout: float | None = None) -> Future[Sample]:
    """Send one ``GET url?s=SECONDS`` (e.g. the app's /slow) in a thread.

    The future's Sample tells status, outcome, the answering pid and latency.
    It never raises: a failure is an outcome.  `timeout` defaults to seconds + 30.
    """
    target = f"{url}{'&' if '?' in url else '?'}s={seconds}"
    host, port, path = _loopback_target(target)
    future: Future[Sample] = Future()
    future.set_running_or_notify_cancel()

    def run() -> None:
        conn = http.client.HTTPConnection(
            host, port, timeout=seconds + 30.0 if timeout is None else timeout
        )
        try:
            future.set_result(request_once(conn, path)[0])
        except BaseException as err:  # never leave the future pending
            future.set_exception(err)
        finally:
            conn.close()

    threading.Thread(target=run, name="lab-slow-request", daemon=True).start()
    return future
