"""Where the train/ and eval/ binaries write, and what a trainer does with the folder it is given.

By default every binary writes into a run folder of its own, ``runs/<binary>/<name>`` under the working directory:
a trainer's name is a hash of its flags (re-running the same command finds the same run, to resume it or to say it
is finished), any other binary's the time it started. The shipped models (``checkpoints/``) and the recorded results
(``eval/results/``) are written only when a flag names them, and a finished model or an existing result is replaced
only with ``--overwrite``, which prints one line saying what it replaced.

A trainer's folder is in one of three states, read at start-up before any data or model is loaded (``start``):
finished (its ``meta.json``, or another marker file, exists), in progress (``train_state/`` holds a saved step), or
new.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import time

from sfc_tf.errors import OutputError

RUNS_DIR = "runs"
STATE_DIR = "train_state"  # as sfc_tf.training.resume (which imports TensorFlow; this module must not)
PROGRESS_FILE = "progress.json"
FINISHED_FILE = "meta.json"
# flags that change how a session runs, not what it trains: the same run whatever their values
SESSION_FLAGS = frozenset(
    {"max_minutes", "until_step", "resume", "overwrite", "verbose", "tensorboard_dir", "strategy", "jit_compile"}
)


def timestamp() -> str:
    """The current UTC time as a folder name (sortable)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def flags_key(values: dict) -> str:
    """A short hash of a binary's flag values (name -> value): the name of its default run folder."""
    text = json.dumps({k: values[k] for k in sorted(values)}, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def binary_flags(flag_values, flag: str) -> dict:
    """Name -> value of the flags defined by the module that defines ``flag`` (a binary's own flags), without
    ``flag`` itself and the ``SESSION_FLAGS``."""
    module = flag_values.find_module_defining_flag(flag)
    return {
        f.name: f.value
        for f in flag_values.get_flags_for_module(module)
        if f.name != flag and f.name not in SESSION_FLAGS
    }


def default_dir(binary: str, name: str | None = None, root: str | os.PathLike | None = None) -> pathlib.Path:
    """``<root>/runs/<binary>/<name>`` (root: the working directory; name: the current time, made unique)."""
    base = pathlib.Path(root or os.getcwd()) / RUNS_DIR / binary
    if name is not None:
        return base / name
    path, n = base / timestamp(), 1
    while path.exists():
        n += 1
        path = base / f"{timestamp()}-{n}"
    return path


def trainer_dir(flag_values, binary: str, flag: str = "checkpoint_dir") -> pathlib.Path:
    """The folder a trainer writes: ``--<flag>`` if given, else ``runs/<binary>/run-<hash of its flags>``."""
    given = getattr(flag_values, flag)
    if given:
        return pathlib.Path(given).expanduser()
    return default_dir(binary, "run-" + flags_key(binary_flags(flag_values, flag)))


def result_file(given: str | None, binary: str, name: str, overwrite: bool = False) -> pathlib.Path | str:
    """Where an evaluation writes ``name``: ``given`` (``-``: standard output), else a new run folder's
    ``runs/<binary>/<time>/<name>``. An existing file is replaced only with ``overwrite`` (``replace_file``)."""
    if given == "-":
        return given
    path = pathlib.Path(given).expanduser() if given else default_dir(binary) / name
    replace_file(path, overwrite)
    return path


def replace_file(path: str | os.PathLike | None, overwrite: bool) -> None:
    """Refuses an existing ``path`` (``OutputError``) unless ``overwrite``; then prints what it replaces."""
    if path is None or path == "-":
        return
    path = pathlib.Path(path)
    if not path.exists():
        return
    if not overwrite:
        raise OutputError(f"{path} exists: pass --overwrite to replace it, or name another file")
    stat = path.stat()
    written = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(stat.st_mtime))
    print(f"replacing {path} ({stat.st_size} bytes, written {written})", flush=True)


@dataclasses.dataclass(frozen=True)
class Start:
    """What a trainer does with its folder: ``finished`` (nothing to do), or train from saved ``step`` (0: new)."""

    directory: pathlib.Path
    step: int
    finished: bool


def saved_step(directory: str | os.PathLike) -> int:
    """The optimizer step of the training state saved in ``directory`` (0 if none)."""
    path = pathlib.Path(directory) / STATE_DIR / PROGRESS_FILE
    try:
        return int(json.loads(path.read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _meta_field(path: pathlib.Path, name: str):
    try:
        return json.loads(path.read_text()).get(name)
    except (OSError, ValueError, AttributeError):
        return None


def finished_summary(directory: pathlib.Path, marker: str) -> str:
    """``N steps`` of a finished run (as its meta.json records them), or the marker file's name."""
    steps = _meta_field(directory / marker, "steps")
    return f"{steps} steps" if steps is not None else f"{marker} written"


def start(
    directory: str | os.PathLike, resume: bool = True, overwrite: bool = False, marker: str = FINISHED_FILE
) -> Start:
    """A trainer's start-up, one printed line: "already finished: N steps, see DIR" (a ``marker`` file is there and
    no ``overwrite``: the caller exits with 0), "resuming from step N in DIR", or "new run in DIR". With
    ``overwrite`` a finished model is replaced ("replacing ..."): its ``marker`` removed now, so that a replacement
    cut short is not taken for the old model. ``resume=False`` discards a saved state."""
    directory = pathlib.Path(directory)
    if (directory / marker).is_file():
        summary = finished_summary(directory, marker)
        if not overwrite:
            print(f"already finished: {summary}, see {directory} (--overwrite replaces it)", flush=True)
            return Start(directory, saved_step(directory), True)
        sha256 = _meta_field(directory / marker, "sha256")
        print(
            f"replacing the finished model in {directory} ({summary}" + (f", sha256 {sha256[:12]})" if sha256 else ")"),
            flush=True,
        )
        (directory / marker).unlink()
    step = saved_step(directory)
    if step and not resume:
        shutil.rmtree(directory / STATE_DIR, ignore_errors=True)
        print(f"new run in {directory} (--noresume: the saved state of step {step} discarded)", flush=True)
        return Start(directory, 0, False)
    if step:
        print(f"resuming from step {step} in {directory}", flush=True)
    else:
        print(f"new run in {directory}", flush=True)
    return Start(directory, step, False)


def define_flags(trainer: bool = True) -> None:
    """``--overwrite`` for every binary that writes, and ``--resume`` (``--noresume``) for trainers."""
    from absl import flags

    flags.DEFINE_bool("overwrite", False, "Replace a finished model or an existing result (prints what it replaced).")
    if trainer:
        flags.DEFINE_bool("resume", True, "Continue from the folder's saved training state (--noresume: start over).")


def resolve_outputs(flag_values, binary: str, default: bool = True, extend: bool = False) -> None:
    """For an evaluation binary: sets ``--output_json`` to ``runs/<binary>/<time>/<binary>.json`` when it is not
    given (``default``), and checks it and its figures (``--plot``, ``--grid_png``) against existing files
    (``replace_file``; ``extend``: a given JSON is extended, not replaced). Exits with a one-line message when a
    file exists without ``--overwrite``."""
    overwrite = flag_values.overwrite
    try:
        given = flag_values.output_json
        if given is None and default:
            flag_values.output_json = str(result_file(None, binary, f"{binary}.json"))
        elif not extend:
            replace_file(given, overwrite)
        for name in ("plot", "grid_png"):  # the figures beside a result
            if name in flag_values:
                replace_file(flag_values[name].value, overwrite)
    except OutputError as exc:
        raise SystemExit(f"{binary}: {exc}") from exc
