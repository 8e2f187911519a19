"""Where the binaries write (sfc_tf.runs): a run folder of their own by default, never the shipped models or the
recorded results; a finished run is a one-line no-op; replacing anything takes --overwrite."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from sfc_tf import runs
from sfc_tf.errors import OutputError

REPO = pathlib.Path(__file__).resolve().parent.parent
BINARIES = sorted(f"{p.parent.name}/{p.name}" for d in ("train", "eval") for p in (REPO / d).glob("*.py"))
TRAINERS = ["train/fit_base_layer.py", "train/fit_predictor.py"] + [b for b in BINARIES if b.startswith("train/train_")]
PROTECTED = ("checkpoints", "eval/results", "serving", "sfc_tf")  # the repository's own files


def _snapshot(*folders: pathlib.Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for f in folders for p in f.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """Every binary loaded from a folder outside the repository, with its defaults (tests/binaries_probe.py)."""
    cwd = tmp_path_factory.mktemp("elsewhere")
    finished = tmp_path_factory.mktemp("finished")
    (finished / "meta.json").write_text(json.dumps({"steps": 7}))
    (finished / "index.json").write_text("{}")
    protected = [REPO / "checkpoints", REPO / "eval" / "results"]
    before = _snapshot(*protected)
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "binaries_probe.py"), str(finished)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {
        "cwd": cwd.resolve(),
        "finished": finished,
        "reports": json.loads(result.stdout.splitlines()[-1]),
        "unchanged": before == _snapshot(*protected),
    }


@pytest.mark.parametrize("binary", BINARIES)
def test_default_invocation_writes_into_a_run_folder(probe, binary):
    """No default names a file of the repository (read defaults resolve through the registry, so the binary runs
    from anywhere); what the default invocation writes lands in runs/<binary>/ under the working directory; the
    shipped models and recorded results are untouched."""
    report = probe["reports"][binary]
    for name, default in report["defaults"].items():
        for value in default if isinstance(default, list) else [default]:
            assert not (isinstance(value, str) and value.startswith(PROTECTED)), f"--{name} defaults to {value}"
    if report["writes"] is not None:
        written = pathlib.Path(report["writes"])
        assert written.is_relative_to(probe["cwd"] / runs.RUNS_DIR / pathlib.Path(binary).stem)
    assert probe["unchanged"]


@pytest.mark.parametrize("binary", TRAINERS)
def test_rerunning_a_finished_trainer_is_a_one_line_no_op(probe, binary):
    lines = probe["reports"][binary]["rerun"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("already finished: ")
    assert f"see {probe['finished']}" in lines[0]


def test_start_says_new_resuming_or_finished(tmp_path, capsys):
    run = runs.start(tmp_path / "a")
    assert (run.step, run.finished) == (0, False) and capsys.readouterr().out == f"new run in {tmp_path / 'a'}\n"
    state = tmp_path / "a" / runs.STATE_DIR
    state.mkdir(parents=True)
    (state / runs.PROGRESS_FILE).write_text(json.dumps({"step": 12, "wall_time_s": 3.0}))
    assert runs.start(tmp_path / "a").step == 12
    assert capsys.readouterr().out == f"resuming from step 12 in {tmp_path / 'a'}\n"
    (tmp_path / "a" / "meta.json").write_text(json.dumps({"steps": 20}))
    assert runs.start(tmp_path / "a").finished
    assert capsys.readouterr().out.startswith(f"already finished: 20 steps, see {tmp_path / 'a'}")
    assert (tmp_path / "a" / "meta.json").is_file()


def test_overwrite_and_noresume(tmp_path, capsys):
    folder = tmp_path / "a"
    (folder / runs.STATE_DIR).mkdir(parents=True)
    (folder / runs.STATE_DIR / runs.PROGRESS_FILE).write_text(json.dumps({"step": 20}))
    (folder / "meta.json").write_text(json.dumps({"steps": 20, "sha256": "ab" * 32}))
    run = runs.start(folder, resume=True, overwrite=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"replacing the finished model in {folder} (20 steps, sha256 {'ab' * 6})" and not run.finished
    assert run.step == 20 and not (folder / "meta.json").exists()  # a cut-short replacement is not the old model
    run = runs.start(folder, resume=False)
    assert run.step == 0 and not (folder / runs.STATE_DIR).exists()
    assert "--noresume" in capsys.readouterr().out


def test_result_files_are_new_or_replaced_on_request(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    default = runs.result_file(None, "benchmark", "benchmark.json")
    assert default.parent.parent == tmp_path / "runs" / "benchmark" and default.name == "benchmark.json"
    existing = tmp_path / "result.json"
    existing.write_text("{}")
    with pytest.raises(OutputError, match="result.json exists: pass --overwrite"):
        runs.result_file(str(existing), "benchmark", "benchmark.json")
    assert runs.result_file(str(existing), "benchmark", "benchmark.json", overwrite=True) == existing
    assert capsys.readouterr().out.startswith(f"replacing {existing} (2 bytes, written ")
    assert runs.result_file("-", "fuzz_decode", "fuzz_decode.json") == "-"


def test_a_trainers_default_folder_is_its_flags_hash():
    """The same command finds the same run; flags of a session (time limit, resume) do not change it."""
    from absl import flags

    values = flags.FlagValues()
    flags.DEFINE_string("checkpoint_dir", None, "", flag_values=values)
    flags.DEFINE_integer("steps", 4, "", flag_values=values)
    flags.DEFINE_float("max_minutes", None, "", flag_values=values)
    values(["prog"])
    first = runs.trainer_dir(values, "train_x")
    values.max_minutes = 2.0
    assert runs.trainer_dir(values, "train_x") == first and first.parent.name == "train_x"
    values.steps = 5
    assert runs.trainer_dir(values, "train_x") != first
    values.checkpoint_dir = "somewhere"
    assert runs.trainer_dir(values, "train_x") == pathlib.Path("somewhere")


@pytest.mark.parametrize("binary", BINARIES)
def test_help_examples_keep_their_line_breaks_and_name_real_models(binary):
    """A backslash ending a line of a (non-raw) docstring joins the lines of an example: it must be doubled. Every
    checkpoints/... path the help names exists (or is the output of an example: convert_weights)."""
    import ast
    import re

    source = (REPO / binary).read_text()
    node = ast.parse(source).body[0]
    lines = source.split("\n")[node.lineno - 1 : node.end_lineno]
    assert not [line for line in lines if line.endswith("\\") and not line.endswith("\\\\")]
    doc = ast.get_docstring(ast.parse(source))
    for path in re.findall(r"(?<![\w/])checkpoints/[\w./-]*\w", doc):
        assert (REPO / path).exists() or f"--output {path}" in doc, path


def test_a_warmup_longer_than_the_run_is_flagged():
    from sfc_tf.reconstruction import training

    assert training.check_warmup(90, 90) is None
    assert "--warmup_steps 90 is longer than the run (4 steps)" in training.check_warmup(90, 4)


def test_a_fractional_learned_quality_is_named_as_given():
    from sfc_tf.enhancement import registry

    with pytest.raises(ValueError, match=r"not 0\.5$"):
        registry.check_quality("learned", 0.5)


def test_summarize_reads_the_recorded_results_from_any_directory(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "eval" / "summarize.py")], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "`eval/results/rate_accuracy_mtcnn.json`" in result.stdout and not list(tmp_path.iterdir())
