"""Resumable training states in the run store, so that a retried train task on another node resumes too.

:mod:`safetax.training.resume` writes complete states into a local directory (``step-<N>/`` with a ``COMPLETE``
marker, and ``epochs/`` with the epoch checkpoints already written). A pod that is preempted loses that directory
with its disk. :class:`StateMirror` copies the newest complete state (with ``epochs/``) to the run store while
training runs: a background thread looks every ``interval`` seconds, hard-links a snapshot (so that the trainer may
prune the original meanwhile) and publishes it with a manifest written last, replacing the previous copy. Before
training, :meth:`StateMirror.restore` puts the published copy back into the local directory, where the trainer
finds it as its own. The copy of a finished run is removed (:meth:`StateMirror.discard`).
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
from pathlib import Path

from safetax.store import MANIFEST, StoreError, fetch, publish
from safetax.store.objects import delete, list_keys, read_text
from safetax.training.resume import link_tree

log = logging.getLogger(__name__)
_STEP = re.compile(r"^step-(\d+)$")
EPOCHS = "epochs"


def newest_state(root: Path) -> Path | None:
    """The newest complete ``step-<N>`` state under ``root``, or None."""
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name)) and (p / "COMPLETE").is_file()]
    return max(found)[1] if found else None


class StateMirror:
    """Keeps ``uri`` (a run-store directory) a copy of the newest complete state under ``local``."""

    def __init__(self, local: Path, uri: str, interval: float = 60.0) -> None:
        self.local, self.uri, self.interval = Path(local), uri, interval
        self.mirrored: str = ""  # name of the state last published
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def restore(self) -> str:
        """Copy the published state into ``local`` (when it holds no newer one); returns its name, "" for none."""
        try:
            if read_text(f"{self.uri.rstrip('/')}/{MANIFEST}") is None:  # nothing published (or not completely)
                return ""
            src = fetch(self.uri, "train state")
        except StoreError:
            return ""
        state = newest_state(src)
        if state is None:
            return ""
        mine = newest_state(self.local)
        if mine is not None and int(mine.name.split("-")[1]) >= int(state.name.split("-")[1]):
            return ""
        self.local.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.local / state.name, ignore_errors=True)
        link_tree(state, self.local / state.name)
        if (src / EPOCHS).is_dir():
            for epoch in (src / EPOCHS).iterdir():
                if not (self.local / EPOCHS / epoch.name).exists():
                    (self.local / EPOCHS).mkdir(exist_ok=True)
                    link_tree(epoch, self.local / EPOCHS / epoch.name)
        self.mirrored = state.name
        log.info("train state %s restored from %s", state.name, self.uri)
        return state.name

    def sync(self) -> bool:
        """Publish the newest complete state if it is not the one published last; returns whether it did."""
        state = newest_state(self.local)
        if state is None or state.name == self.mirrored:
            return False
        with tempfile.TemporaryDirectory(dir=self.local.parent, prefix=".state-mirror-") as tmp:
            snap = Path(tmp) / "state"
            snap.mkdir()
            link_tree(state, snap / state.name)  # hard links: the trainer may prune the original meanwhile
            if (self.local / EPOCHS).is_dir():
                link_tree(self.local / EPOCHS, snap / EPOCHS)
            publish(snap, self.uri)
        self.mirrored = state.name
        log.info("train state %s copied to %s", state.name, self.uri)
        return True

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self.sync()
                except Exception as e:  # noqa: BLE001 - a failed copy costs a resume, never the training
                    log.warning("train state not copied to the store (%s): a retry may start further back", e)

        self._thread = threading.Thread(target=loop, name="state-mirror", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def discard(self) -> None:
        """Remove the published copy (the run finished: its states are no longer needed)."""
        try:
            for key in list_keys(self.uri):
                delete(f"{self.uri.rstrip('/')}/{key}")
        except StoreError as e:
            log.warning("train state copy %s not removed (%s)", self.uri, e)
