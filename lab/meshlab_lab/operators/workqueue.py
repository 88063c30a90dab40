"""A de-duplicating work queue with delayed re-queue, and a controller loop built on it."""
import heapq
import itertools
import logging
import threading
import time

LOG = logging.getLogger(__name__)


class WorkQueue:
    def __init__(self):
        self._cv = threading.Condition()
        self._ready: list = []
        self._queued: set = set()
        self._delayed: list = []
        self._seq = itertools.count()

    def add(self, key, after: float = 0.0) -> None:
        with self._cv:
            if after > 0:
                heapq.heappush(self._delayed, (time.monotonic() + after, next(self._seq), key))
            elif key not in self._queued:
                self._queued.add(key)
                self._ready.append(key)
            self._cv.notify()

    def get(self, stop: threading.Event, poll: float = 0.5):
        """Next key, or None once ``stop`` is set (checked at least every ``poll`` seconds)."""
        with self._cv:
            while not stop.is_set():
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, key = heapq.heappop(self._delayed)
                    if key not in self._queued:
                        self._queued.add(key)
                        self._ready.append(key)
                if self._ready:
                    key = self._ready.pop(0)
                    self._queued.discard(key)
                    return key
                timeout = poll if not self._delayed else min(poll, max(self._delayed[0][0] - now, 0.0))
                self._cv.wait(timeout)
        return None


class Controller:
    """Subclasses set ``name``, list their watches in ``watches()`` and implement ``reconcile(key)``.

    ``watches()`` yields ``(url_path, handler)``; ``handler(event_type, obj)`` enqueues keys.
    """

    name = "controller"

    def __init__(self, rest, stop: threading.Event):
        self.rest = rest
        self.stop = stop
        self.queue = WorkQueue()
        self.threads: list[threading.Thread] = []

    def watches(self):
        return []

    def reconcile(self, key) -> None:
        raise NotImplementedError

    def start_watch(self, url_path, handler, label_selector=None):
        thread = threading.Thread(target=self.rest.watch, args=(url_path, handler, self.stop),
                                  kwargs={"label_selector": label_selector},
                                  name=f"{self.name}-watch-{url_path}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def start(self):
        for url_path, handler in self.watches():
            self.start_watch(url_path, handler)
        worker = threading.Thread(target=self._work, name=f"{self.name}-worker", daemon=True)
        worker.start()
        self.threads.append(worker)

    def _work(self):
        failures: dict = {}
        while True:
            key = self.queue.get(self.stop)
            if key is None:
                return
            try:
                retry_after = self.reconcile(key)
                failures.pop(key, None)
            except Exception as exc:  # noqa: BLE001 - one bad object must not stop the controller
                count = failures[key] = failures.get(key, 0) + 1
                if count == 1:
                    LOG.exception("%s: reconcile %s failed; retrying with back-off", self.name, key)
                else:
                    LOG.warning("%s: reconcile %s failed again (%d): %s", self.name, key, count, exc)
                retry_after = min(0.25 * 2 ** count, 30.0)
            if retry_after:
                self.queue.add(key, after=retry_after)
