"""Input that overlaps compute: the next batches are read and put on the devices while
the current step runs.

`Prefetcher` wraps a training iterator (a grain iterator, with or without worker
processes). A thread reads up to `depth` batches ahead, each with the iterator's state
taken right after it, and places them on the mesh with `to_global` (sharded along the
batch axis). `get_state()` is the state after the last batch handed to the trainer, not
after the last one read, so a checkpoint resumes at exactly the next unconsumed batch
(docs/ARCHITECTURE.md, "A batch's path"). It speaks grain's checkpoint protocol
(`get_state` / `set_state` / `start_prefetch`), as bytes of JSON like grain's own files.
"""

import json
import queue
import threading
from typing import Any

_END = object()  # the wrapped iterator is exhausted


class Prefetcher:
  """Yields (host batch, global batch) pairs, `depth` of them read ahead on a thread."""

  def __init__(self, iterator, to_global, depth: int = 2):
    self._iterator = iterator
    self._to_global = to_global
    self._depth = max(depth, 1)
    self._state = iterator.get_state()
    self._queue = None
    self._thread = None
    self._stop = threading.Event()

  def __getattr__(self, name: str) -> Any:
    # Whatever else the wrapped iterator offers (batches_per_epoch, plan, skips, ...).
    return getattr(self._iterator, name)

  def __iter__(self) -> "Prefetcher":
    return self

  def __next__(self) -> tuple[dict, dict]:
    self.start_prefetch()
    item = self._queue.get()
    if item is _END:
      raise StopIteration
    if isinstance(item, BaseException):
      raise item
    batch, global_batch, self._state = item
    return batch, global_batch

  def start_prefetch(self) -> None:
    """Starts the reading thread (idempotent); after it, the state cannot be set."""
    if self._thread is None:
      self._queue = queue.Queue(maxsize=self._depth)
      self._thread = threading.Thread(target=self._read, name="prefetch", daemon=True)
      self._thread.start()

  def _read(self) -> None:
    try:
      for batch in self._iterator:
        item = (batch, self._to_global(batch), self._iterator.get_state())
        if not self._put(item):
          return
      self._put(_END)
    except Exception as e:  # pylint: disable=broad-except (handed to the trainer)
      self._put(e)

  def _put(self, item) -> bool:
    """Waits for room in the queue; False once the prefetcher is closed."""
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def get_state(self) -> bytes:
    return json.dumps(self._state).encode()

  def set_state(self, state: bytes) -> None:
    if self._thread is not None:
      raise RuntimeError("The prefetcher has started reading; its state cannot be set.")
    self._state = json.loads(state)
    self._iterator.set_state(self._state)

  def close(self) -> None:
    """Stops the thread and closes the wrapped iterator (its worker processes)."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    close = getattr(self._iterator, "close", None)
    if close is not None:
      close()
