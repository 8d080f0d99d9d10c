"""What a long command shows on the terminal: one progress bar per stage and its summary line.

Everything else a stage prints -- Ray's operator bars and worker logs, raylet warnings, library
warnings, checkpoint messages -- goes to the run's log file, whose path is printed first::

    with Console(Path("runs/logs/pretrain.log")) as console:
        with console.stage("pretrain"):
            run(cfg)              # calls progress(...) / follow(...) and summary(...)

``Console(None)`` (``--verbose``) captures nothing: every line reaches the terminal as before.
Stage code reports through the module functions, which do the plain thing when no console is
active: :func:`summary` prints, :func:`progress` and :func:`follow` do nothing.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

# Deprecation warnings raised inside the libraries we call, by their own calls (ours are fixed
# at the call).  Filtered by category and message, at our entry points only: ``medgo`` commands
# and the first line of each Ray worker's function.
LIBRARY_WARNINGS: list[tuple[type[Warning], str]] = [
    (FutureWarning, r"`torch\.distributed\.(reduce_scatter_tensor|all_gather_into_tensor)` is deprecated"),  # DeepSpeed ZeRO-3
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),  # PEFT and TRL
    (UserWarning, r"'pin_memory' argument is set as true but no accelerator is found"),  # HF Trainer's DataLoader on a CPU
    (DeprecationWarning, r"`ExecutionOptions\.exclude_resources` is deprecated"),  # Ray Data's own ingest options
    (UserWarning, r"\s*The hypothesis contains 0 counts of \d-gram overlaps"),  # NLTK's BLEU (IMCS-V2-MRG): 0, as the official scorer reports
]
VERBOSE_ENV = "MEDGO_VERBOSE"
POLL_S = 0.5
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar:30}| {n_fmt}/{total_fmt} [{elapsed}]"
PROGRESS_FILE = "progress.json"
"""Where a training run's rank 0 writes its step count for the driver's bar."""

_active: Console | None = None


def active() -> Console | None:
    """The console of the running command, if any."""
    return _active


def verbose() -> bool:
    """``MEDGO_VERBOSE=1`` (what ``--verbose`` sets): show everything, filter nothing."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_library_warnings() -> None:
    """Ignore the known library warnings in this process (a no-op in verbose mode)."""
    if verbose():
        return
    for category, message in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def summary(line: str) -> None:
    """A stage's result line: on the terminal, also when everything else goes to the log."""
    if _active is None:
        print(line, flush=True)
    else:
        _active.say(line)


def progress(done: int, total: int) -> None:
    """Move the running stage's bar (from the process that runs the console)."""
    if _active is not None:
        _active.set_progress(done, total)


def follow(path: Path) -> None:
    """Move the running stage's bar from ``{"done", "total"}`` that workers write to ``path``."""
    if _active is not None:
        _active.followed = Path(path)


def write_progress(path: Path, done: int, total: int) -> None:
    """Atomically record ``done`` of ``total`` for :func:`follow` (workers call this)."""
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps({"done": done, "total": total}), encoding="utf-8")
    os.replace(tmp, path)


class Console:
    """Sends file descriptors 1 and 2 to ``log_path`` and keeps the terminal for bars and summaries."""

    def __init__(self, log_path: Path | None):
        self.log_path = log_path
        self.term = sys.stdout
        self.bar: tqdm | None = None
        self.followed: Path | None = None
        self._saved: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._ray_was_up = False
        self._held: list[str] = []

    def __enter__(self) -> Console:
        global _active
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            sys.stdout.flush()
            sys.stderr.flush()
            self._saved = os.dup(1), os.dup(2)
            self.term = os.fdopen(os.dup(self._saved[0]), "w", buffering=1, encoding="utf-8")
            self.term.write(f"log: {self.log_path}\n")
            log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            quiet_library_warnings()
            self._ray_was_up = _ray_is_up()
        _active = self
        return self

    def __exit__(self, *exc) -> None:
        global _active
        _active = None
        if self._saved is not None:
            if not self._ray_was_up and _ray_is_up():  # the Ray this command started prints until it stops
                import ray

                ray.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, saved in zip((1, 2), self._saved):
                os.dup2(saved, fd)
                os.close(saved)
            self.term.close()
            self._saved = None

    @property
    def captured(self) -> bool:
        return self._saved is not None

    def say(self, line: str) -> None:
        """A line on the terminal; during a stage, after the stage's finished bar."""
        with self._lock:
            if self.bar is not None:
                self._held.append(line)
            else:
                self.term.write(line + "\n")
                self.term.flush()

    def set_progress(self, done: int, total: int) -> None:
        with self._lock:
            if self.bar is not None:
                self.bar.total = max(total, 1)
                self.bar.n = min(done, self.bar.total)
                self.bar.refresh()

    @contextmanager
    def stage(self, name: str):
        """A bar for one stage, moved by :func:`progress` or a followed file; closed full on success."""
        if not self.captured:  # verbose: the stage's own output is the progress
            yield self
            return
        quiet_library_warnings()  # again: a library imported since may have put its own filter first
        self.followed = None
        live = self.term.isatty()  # a file or pipe gets the finished bar only, not every redraw
        self.bar = tqdm(total=1, desc=f"{name:<12}", file=self.term if live else _Discard(), leave=live, bar_format=BAR_FORMAT, mininterval=POLL_S)
        stop = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(stop,), daemon=True)
        watcher.start()
        failed = True
        try:
            yield self
            failed = False
        finally:
            stop.set()
            watcher.join()
            with self._lock:
                if not failed:
                    self.bar.n = self.bar.total
                self.bar.refresh()
                if not live:
                    self.term.write(tqdm.format_meter(**{**self.bar.format_dict, "ncols": 80}) + "\n")
                self.bar.close()
                self.bar = None
            for line in self._held:
                self.say(line)
            self._held = []
            if failed:
                self.say(f"{name}: failed; the log has the details: {self.log_path}")

    def _watch(self, stop: threading.Event) -> None:
        while not stop.wait(POLL_S):
            path = self.followed
            if path is None or not path.is_file():
                with self._lock:
                    if self.bar is not None:
                        self.bar.refresh()  # keeps the elapsed time moving
                continue
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            self.set_progress(int(state["done"]), int(state["total"]))


class _Discard:
    """A write-only sink for a bar that is drawn once at the end."""

    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def _ray_is_up() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def logging_to(folder: Path, command: str) -> Console:
    """A console logging to ``<folder>/logs/<command>-<time>.log``; capturing nothing with ``MEDGO_VERBOSE=1``."""
    return Console(None if verbose() else log_path_for(folder, command))


@contextmanager
def quietly(name: str, folder: Path):
    """A block whose output goes to ``<folder>/logs/<name>-<time>.log`` behind one bar (a benchmark's
    measurements, say); with ``MEDGO_VERBOSE=1`` nothing is captured.  Print results after it."""
    with logging_to(folder, name) as con, con.stage(name):
        yield con


def log_path_for(folder: Path, command: str) -> Path:
    """``<folder>/logs/<command>-<YYYYmmdd-HHMMSS>.log``."""
    return Path(folder) / "logs" / f"{command.replace(' ', '-')}-{time.strftime('%Y%m%d-%H%M%S')}.log"
