"""The delivery loop: batches go into the spool first, and a background thread sends the oldest, deleting it
only once acknowledged; a collector that is down or slow is retried with backoff and jitter, a batch it
refuses for good (4xx other than 408/429) is logged, counted and dropped."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from fleetprof.reporter.backoff import Backoff
from fleetprof.reporter.batch import Batch
from fleetprof.reporter.senders import Outcome, Sender
from fleetprof.reporter.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)
IDLE_WAIT_S = 1.0


class Reporter:
    """Owns the sender thread; `submit` never blocks on the network."""

    def __init__(
        self,
        spool: Spool,
        sender: Sender,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spool = spool
        self.sender = sender
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._deadline = float("inf")
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._down_since: float | None = None
        self.sent_batches = 0
        self.sent_bytes = 0
        self.retries = 0
        self.rejected_batches = 0
        self.last_error = ""

    def start(self) -> None:
        """Start delivering (spooled batches of an earlier run first)."""
        self._thread = threading.Thread(target=self._run, name="fleetprof-reporter", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch) -> SpoolEntry | None:
        """Spool `batch` durably and wake the sender (SpoolError when the spool can't be written)."""
        entry = self.spool.put(batch)
        self._wake.set()
        return entry

    def close(self, flush_timeout_s: float = 5.0) -> bool:
        """Stop: keep sending what is spooled until it is all delivered, the collector fails once more, or
        `flush_timeout_s` passes; the rest stays spooled for the next start. True when nothing is left."""
        self._deadline = self._clock() + flush_timeout_s
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(flush_timeout_s + self.sender_timeout() + 1.0)
        self.sender.close()
        left = len(self.spool)
        if left:
            log.info("%d batch(es) stay in the spool %s for the next start", left, self.spool.directory)
        return left == 0

    def sender_timeout(self) -> float:
        """How long one attempt may block."""
        return float(getattr(self.sender, "timeout_s", 30.0))

    def stats(self) -> dict[str, int]:
        """Counters since start (the spool's drops included)."""
        return {
            "reporter_sent_batches": self.sent_batches,
            "reporter_sent_bytes": self.sent_bytes,
            "reporter_retries": self.retries,
            "reporter_rejected_batches": self.rejected_batches,
            "reporter_spooled_batches": len(self.spool),
            "reporter_spooled_bytes": self.spool.bytes,
            "reporter_dropped_batches": self.spool.dropped_batches,
            "reporter_dropped_bytes": self.spool.dropped_bytes,
        }

    def _run(self) -> None:
        while True:
            stopping = self._stopping.is_set()
            if stopping and self._clock() >= self._deadline:
                return
            entry = self.spool.oldest()
            if entry is None:
                if stopping:
                    return
                self._wake.wait(IDLE_WAIT_S)
                self._wake.clear()
                continue
            if not self._deliver(entry):
                if self._stopping.is_set():
                    return  # the collector is still failing: the rest waits in the spool
                self._stopping.wait(self.backoff.next_delay())

    def _deliver(self, entry: SpoolEntry) -> bool:
        """Send one spooled batch; False when it should be retried later."""
        batch = self.spool.load(entry)
        if batch is None:
            return True
        try:
            result = self.sender.send(batch)
        except Exception as exc:  # a sender bug must not kill delivery: treat as transient, log it
            log.exception("sending batch %s failed", batch.batch_id)
            result_outcome, reason = Outcome.RETRY, f"sender error: {exc}"
        else:
            result_outcome, reason = result.outcome, result.reason
        if result_outcome is Outcome.ACK:
            self.spool.remove(entry)
            self.sent_batches += 1
            self.sent_bytes += entry.size
            self.backoff.reset()
            if self._down_since is not None:
                log.info("collector reachable again after %.0f s", self._clock() - self._down_since)
                self._down_since = None
            return True
        if result_outcome is Outcome.REJECT:
            self.spool.remove(entry)
            self.rejected_batches += 1
            self.last_error = reason
            log.warning(
                "collector refused batch %s (%s); dropped (%d refused in all)",
                batch.batch_id,
                reason,
                self.rejected_batches,
            )
            return True
        self.retries += 1
        self.last_error = reason
        if self._down_since is None:
            self._down_since = self._clock()
            log.warning("collector unavailable (%s); spooling and retrying with backoff", reason)
        else:
            log.debug("collector still unavailable: %s", reason)
        return False
