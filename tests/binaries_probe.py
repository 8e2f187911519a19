"""Loads every train/ and eval/ binary in this process, one after another, from the working directory it is started
in, and prints a JSON report per binary: its flags' defaults, where its default invocation writes, and (trainers)
what re-running into a finished folder prints. Run by tests/test_runs.py with the working directory outside the
repository; each binary's flags are removed again before the next one is loaded.

  python tests/binaries_probe.py FINISHED_DIR
"""

import contextlib
import importlib.util
import io
import json
import pathlib
import sys

import tensorflow  # noqa: F401  (as the binaries: TensorFlow before absl's flags)
from absl import flags

REPO = pathlib.Path(__file__).resolve().parent.parent
FLAGS = flags.FLAGS
# trainer -> the flag naming its folder (they decide at start-up, before loading anything: sfc_tf.runs.start)
TRAINERS = {
    "train_face_codec": "checkpoint_dir",
    "train_reconstructor": "checkpoint_dir",
    "train_enhancement": "checkpoint_dir",
    "fit_predictor": "checkpoint_dir",
    "fit_base_layer": "output_dir",
}


def probe(path: pathlib.Path, finished: pathlib.Path) -> dict:
    from sfc_tf import runs

    spec = importlib.util.spec_from_file_location(f"binary_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    FLAGS.mark_as_parsed()  # the defaults, without the required flags' validators
    own = FLAGS.get_flags_for_module(module.__name__)
    report = {"defaults": {f.name: f.default for f in own}, "writes": None, "rerun": None}
    if path.stem in TRAINERS:
        report["writes"] = str(runs.trainer_dir(FLAGS, path.stem, TRAINERS[path.stem]).resolve())
        FLAGS[TRAINERS[path.stem]].value = str(finished)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            module.main(None)
        report["rerun"] = out.getvalue()
    elif "output_json" in FLAGS and FLAGS["output_json"].default is None and path.stem != "verify_lfw":
        runs.resolve_outputs(FLAGS, path.stem)
        report["writes"] = str(pathlib.Path(FLAGS.output_json).resolve())
    return report


def main(finished: str) -> None:
    reports = {}
    for path in sorted((REPO / "train").glob("*.py")) + sorted((REPO / "eval").glob("*.py")):
        before = set(FLAGS)
        try:
            reports[f"{path.parent.name}/{path.name}"] = probe(path, pathlib.Path(finished))
        finally:
            FLAGS.unparse_flags()
            for name in set(FLAGS) - before:
                delattr(FLAGS, name)
    print(json.dumps(reports, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
