"""Faces/s of the Beam archive pipeline (DirectRunner, N worker processes) against ``sfc compress DIR`` (one
process), on the same LFW images, each run in its own fresh process (model loading included, as a user sees it).

  python eval/archive_throughput.py --lfw_dir ../shared/data/lfw --output_json eval/results/archive_throughput.json
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from sfc_tf import runs

FLAGS = flags.FLAGS
flags.DEFINE_string("lfw_dir", None, "LFW root.", required=True)
flags.DEFINE_integer("images", 200, "Images (the first identities' folders in sorted order).")
flags.DEFINE_integer("workers", 2, "Beam DirectRunner worker processes.")
flags.DEFINE_string("enhancement", "jpeg", "Enhancement layer.")
flags.DEFINE_string("quality", "50", "Its quality.")
flags.DEFINE_string(
    "output_json", None, "Result JSON; default: runs/archive_throughput/<time>/archive_throughput.json."
)
runs.define_flags(trainer=False)


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        command,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return time.perf_counter() - start


def main(_):
    runs.resolve_outputs(FLAGS, "archive_throughput")
    images = sorted(pathlib.Path(FLAGS.lfw_dir).glob("*/*.jpg"))[: FLAGS.images]
    work = pathlib.Path(tempfile.mkdtemp(prefix="sfc_archive_"))
    try:
        inputs = work / "in"
        for image in images:
            (inputs / image.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, inputs / image.parent.name / image.name)
        coding = ["--enhancement", FLAGS.enhancement, "--quality", FLAGS.quality]
        sfc = pathlib.Path(sys.executable).with_name("sfc")
        cli_s = timed(
            [str(sfc), "compress", *[str(p) for p in sorted(inputs.glob("*/*.jpg"))], str(work / "cli"), *coding]
        )
        beam_s = timed(
            [
                sys.executable,
                "-m",
                "sfc_tf.apps.archive",
                "--input",
                str(inputs / "*" / "*.jpg"),
                "--output",
                str(work / "beam"),
                *coding,
                "--",
                "--runner",
                "DirectRunner",
                f"--direct_num_workers={FLAGS.workers}",
                "--direct_running_mode=multi_processing",
            ]
        )
        same = sum(
            (work / "cli" / (p.stem + ".sfc")).read_bytes() == p.read_bytes() for p in (work / "beam").glob("*/*.sfc")
        )
        result = {
            "images": len(images),
            "enhancement": f"{FLAGS.enhancement} {FLAGS.quality}",
            "cpu_count": os.cpu_count(),
            "sfc_compress_s": round(cli_s, 1),
            "sfc_compress_faces_per_s": len(images) / cli_s,
            "beam_workers": FLAGS.workers,
            "beam_s": round(beam_s, 1),
            "beam_faces_per_s": len(images) / beam_s,
            "beam_over_sfc_compress": cli_s / beam_s,
            "identical_files": same,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output_json)), exist_ok=True)
    pathlib.Path(FLAGS.output_json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    app.run(main)
