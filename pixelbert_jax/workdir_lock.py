"""One run per workdir: a lock file naming its holder (host, pid, start time).

Two runs sharing a workdir replace each other's checkpoints and mix their records, so
a run takes `<workdir>/run.lock` before it writes anything there and a second run is
refused with the holder's name. A lock is stale, and taken over with a warning, when
its process is gone (same host) or, for a holder on another host whose liveness cannot
be checked, when its heartbeat (the file's modification time, touched by a thread of
the holder) is older than `stale_after_s`. In a multi-process run the coordinator
(process 0) holds it for all.
"""

import json
import os
import socket
import threading
import time

import jax
from absl import logging
from etils import epath

LOCK_FILE = "run.lock"


class WorkdirLockedError(RuntimeError):
  """Another live run holds the workdir."""


class WorkdirLock:
  """Context manager holding `<workdir>/run.lock` for the duration of a run."""

  def __init__(self, workdir: str | epath.Path, *, stale_after_s: float = 600.0,
               heartbeat_s: float = 60.0):
    self.path = epath.Path(workdir) / LOCK_FILE
    self.stale_after_s = stale_after_s
    self.heartbeat_s = heartbeat_s
    self._holder = {"host": socket.gethostname(), "pid": os.getpid(),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    self._stop = threading.Event()
    self._thread = None

  def __enter__(self) -> "WorkdirLock":
    if jax.process_index() == 0:
      self.path.parent.mkdir(parents=True, exist_ok=True)
      self._acquire()
      self._thread = threading.Thread(target=self._beat, daemon=True,
                                      name="workdir-lock-heartbeat")
      self._thread.start()
    return self

  def __exit__(self, *exc_info) -> None:
    if self._thread is None:
      return
    self._stop.set()
    self._thread.join()
    if self._read() == self._holder:  # never removes a lock taken over by another run
      self.path.unlink(missing_ok=True)

  def _acquire(self) -> None:
    """Creates the lock file atomically; replaces it only if its holder is stale."""
    for _ in range(2):
      if _create_exclusive(self.path, json.dumps(self._holder)):
        return
      holder = self._read()
      if holder is not None and not self._is_stale(holder):
        raise WorkdirLockedError(_locked_message(self.path, holder))
      logging.warning("Taking over the stale lock %s of %s", self.path, holder)
      self.path.unlink(missing_ok=True)
    raise WorkdirLockedError(f"Could not take the lock {self.path}: another run is "
                             "starting in this workdir at the same time.")

  def _read(self) -> dict | None:
    """The holder in the lock file; None if it is gone or unreadable (a crash mid-write)."""
    try:
      return json.loads(self.path.read_text())
    except (FileNotFoundError, ValueError):
      return None

  def _is_stale(self, holder: dict) -> bool:
    if holder.get("host") == socket.gethostname():
      return not _alive(int(holder.get("pid", -1)))
    try:
      age = time.time() - self.path.stat().mtime
    except FileNotFoundError:
      return True
    return age > self.stale_after_s

  def _beat(self) -> None:
    """Touches the lock file so that other hosts can tell the holder is alive."""
    while not self._stop.wait(self.heartbeat_s):
      try:
        _touch(self.path)
      except OSError as e:  # a heartbeat that fails must not stop the run
        logging.warning("Could not refresh the lock %s: %s", self.path, e)


def _is_local(path: epath.Path) -> bool:
  return "://" not in str(path)


def _create_exclusive(path: epath.Path, text: str) -> bool:
  """Writes `text` to a new file; False if it exists. Atomic on a local or network
  disk; on an object store (gs://) a check then a write, which leaves a short race."""
  if _is_local(path):
    try:
      with open(os.fspath(path), "x") as f:
        f.write(text)
      return True
    except FileExistsError:
      return False
  if path.exists():
    return False
  path.write_text(text)
  return True


def _touch(path: epath.Path) -> None:
  if _is_local(path):
    os.utime(os.fspath(path))
  else:  # object stores have no utime: rewriting the object renews its time
    path.write_text(path.read_text())


def _alive(pid: int) -> bool:
  if pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # it exists, under another user
    return True
  return True


def _locked_message(path: epath.Path, holder: dict) -> str:
  return (f"The workdir {path.parent} is in use by another run: pid {holder.get('pid')} "
          f"on host {holder.get('host')}, started {holder.get('started')} (lock file "
          f"{path}). Wait for that run to end, stop it, or use another --workdir. If that "
          "run is gone (a crashed host), delete the lock file.")
