"""Long fuzzing run of ``ScalableCodec.decode`` (atheris / libFuzzer) on mutated real files of the shipped models.

  python eval/fuzz_decode.py --runs 100000 --output_json eval/results/fuzz_decode.json

The parent process codes the six fixture faces into a seed corpus (base only; every image codec of the registry,
i.e. the JPEG file and the headerless JPEG, JPEG2000, AVIF, JPEG XL and WebP, and learned, in the paper's and the
auto mode: ``fuzzing.SEED_STREAMS``; one face at every quality of every registered residual and conditional family;
conditional in the MMSE mode with an untrained stand-in) and starts libFuzzer in a child
process, which loads every registered model (decoding each seed) before fuzzing. libFuzzer then bounds every decode:
its RSS limit is the resident size with all models loaded plus --rss_margin_mb, and a per-input timeout. The child
runs with MALLOC_ARENA_MAX=2 (unless set) and returns freed heap pages to the system after each model load and every
--trim_every inputs, so the peak RSS measures memory in use rather than glibc's free lists; the same settings suit a
long-running decoding server. Each input is mutated by libFuzzer or by ``sfc_tf.evaluation.fuzzing.mutate``
and resealed (CRCs recomputed, so the payload parsers are reached), then decoded at one of the three layers; whenever it
parses as a file with an enhancement layer, its enhancement part is also grafted onto another face's base part and must
be refused as a splice; ``parsed_by_codec`` counts the inputs that parse whole, by enhancement codec (how often each
payload decoder was reached). Any exception other than an ``SfcError`` and any wrong result is a crash (libFuzzer
stops and keeps the input under --work_dir). A SIGINT to the fuzzer process ends the run early with the counts so far.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import time

import tensorflow  # noqa: F401  (TF 2.14 builds no functional Keras model if first imported inside app.run)
from absl import app, flags

from sfc_tf import runs

FLAGS = flags.FLAGS
flags.DEFINE_integer("runs", 100_000, "Inputs to decode.")
flags.DEFINE_string("output_json", None, "Result JSON; default: runs/fuzz_decode/<time>/fuzz_decode.json.")
runs.define_flags(trainer=False)
flags.DEFINE_string("work_dir", "/tmp/sfc_fuzz", "Seed corpus, stand-in conditional codec, crash inputs, stats.")
flags.DEFINE_integer(
    "rss_margin_mb",
    256,
    "libFuzzer's RSS limit is the child's resident size once every "
    "registered model is loaded plus this margin: one input costing more is a failure.",
)
flags.DEFINE_integer("timeout_s", 20, "libFuzzer's per-input timeout: exceeding it is a failure (a hang).")
flags.DEFINE_integer("seed", 1, "libFuzzer seed.")
flags.DEFINE_string("model_set", None, "Registered model set whose files seed the corpus (default: the default).")
flags.DEFINE_integer(
    "keep_recent",
    0,
    "Keep the last N inputs under <work_dir>/recent (a native memory error is "
    "often detected some inputs after the one that caused it).",
)
flags.DEFINE_integer(
    "trim_every",
    500,
    "Return freed heap memory to the system (glibc malloc_trim) after every "
    "model load and every N inputs: what the RSS limit then bounds is memory in use, not glibc's "
    "retained free lists (0: never).",
)
flags.DEFINE_list(
    "seed_codecs",
    [],
    "Fuzz only the seed files whose enhancement layer is coded by these codecs (e.g. avif,jpegxl,webp,jpeg); "
    "every model is still loaded from all seeds first (default: every seed).",
)
flags.DEFINE_enum(
    "stage", None, ["corpus", "fuzz"], "Internal: the child process that builds the seed corpus or " "runs the fuzzer."
)

FIXTURE_FACES = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "lfw"


def model_set_flag() -> list[str]:
    return [f"--model_set={FLAGS.model_set}"] if FLAGS.model_set else []


def build_seed_corpus(work: pathlib.Path) -> None:
    import numpy as np

    from sfc_tf import bitstream
    from sfc_tf.base import align
    from sfc_tf.codec import ScalableCodec
    from sfc_tf.evaluation import fuzzing

    conditional = fuzzing.conditional_stand_in(work / "conditional")
    codec = ScalableCodec.from_pretrained(FLAGS.model_set, align="center", learned_dirs=(conditional,))
    crops = np.stack([align.center_crop(align.load_image(p)) for p in sorted(FIXTURE_FACES.glob("*/*.jpg"))])
    corpus = fuzzing.build_corpus(codec, crops, conditional_dir=conditional)
    for folder in ("corpus", "preload"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    for name, data in zip(corpus.names, corpus.files):
        (work / "preload" / f"{name}.sfc").write_bytes(data)
        enhancement = bitstream.unpack(data).enhancement
        if not FLAGS.seed_codecs or (enhancement is not None and enhancement.codec_name in FLAGS.seed_codecs):
            (work / "corpus" / f"{name}.sfc").write_bytes(data)


def peak_by_tenth(samples: list[tuple[int, int]], runs: int) -> dict[int, int]:
    """libFuzzer's (inputs, peak RSS MB) status samples -> the peak reached by every tenth of the run: whether
    memory levels off or keeps climbing."""
    marks = [runs * k // 10 for k in range(1, 11)]
    return {mark: max((mb for n, mb in samples if n <= mark), default=0) for mark in marks}


def release_freed_memory() -> None:
    """glibc keeps freed heap pages (TF's per-call buffers, fragmented across arenas) until told otherwise."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)


def run_child(work: pathlib.Path) -> None:
    """The libFuzzer process: decode every input, count the outcomes (written after each input)."""
    import resource
    import zlib

    import atheris
    import numpy as np

    # numba compiles range_guard's decoder from its bytecode, which atheris's instrumentation would change
    with atheris.instrument_imports(include=["sfc_tf"], exclude=["sfc_tf.enhancement.range_guard"]):
        from sfc_tf import bitstream, zoo
        from sfc_tf.codec import LAYERS, ScalableCodec
        from sfc_tf.enhancement import learned
        from sfc_tf.evaluation import fuzzing

    codec = ScalableCodec.from_pretrained(FLAGS.model_set, align="center", learned_dirs=(work / "conditional",))
    seeds = [p.read_bytes() for p in sorted((work / "corpus").glob("*.sfc"))]
    grafts = [s for s in seeds if bitstream.base_part_bytes(s) < len(s)]
    counts = {
        "runs": 0,
        "refused": 0,
        "decoded": 0,
        "splices_refused": 0,
        **{f"decoded_{layers}": 0 for layers in LAYERS},
        "parsed_by_codec": {name: 0 for name in bitstream.CODECS.values()},
    }

    def write_stats():
        counts["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        (work / "stats.json").write_text(json.dumps(counts))

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = np.random.default_rng(seed)
        mutated = atheris.Mutate(data, max_size) if rng.random() < 0.5 else fuzzing.mutate(data, rng)
        return fuzzing.reseal(mutated) if rng.random() < 0.8 else mutated

    recent = work / "recent"
    if FLAGS.keep_recent:
        recent.mkdir(exist_ok=True)

    def test_one_input(data: bytes) -> None:
        if FLAGS.keep_recent:
            (recent / f"{counts['runs'] % FLAGS.keep_recent:05d}.sfc").write_bytes(data)
        layers = LAYERS[zlib.crc32(data) % len(LAYERS)]
        outcome = fuzzing.decode_checked(codec, data, layers)
        counts[outcome] += 1
        if outcome == "decoded":
            counts[f"decoded_{layers}"] += 1
        try:
            parsed_whole = bitstream.base_part_bytes(data) < len(data) and bitstream.unpack(data)
        except bitstream.BitstreamError:
            parsed_whole = False
        if parsed_whole:
            counts["parsed_by_codec"][parsed_whole.enhancement.codec_name] += 1
            other = grafts[zlib.crc32(data[:8]) % len(grafts)]
            spliced = fuzzing.splice(other, data)
            if spliced != data and bitstream.unpack_base(other) != bitstream.unpack_base(data):
                fuzzing.decode_splice(codec, spliced)
                counts["splices_refused"] += 1
        counts["runs"] += 1
        if FLAGS.trim_every and counts["runs"] % FLAGS.trim_every == 0:
            release_freed_memory()
        write_stats()

    for data in (p.read_bytes() for p in sorted((work / "preload").glob("*.sfc"))):
        # the seed files name every registered learned model: load all before the clock
        for layers in LAYERS:
            codec.decode(data, layers)
        if FLAGS.trim_every:
            release_freed_memory()
    for set_id in zoo.model_sets():  # and every registered model set's base layer (a mutated set id names one)
        codec.models_for(set_id).base_layer  # noqa: B018 (loads it)
    counts["learned_checkpoints_loaded"] = learned.loaded_checkpoints()
    write_stats()
    counts["models_loaded_rss_mb"] = round(counts["peak_rss_mb"])
    counts["rss_limit_mb"] = counts["models_loaded_rss_mb"] + FLAGS.rss_margin_mb
    atheris.Setup(
        [
            sys.argv[0],
            f"-runs={FLAGS.runs}",
            f"-rss_limit_mb={counts['rss_limit_mb']}",
            f"-timeout={FLAGS.timeout_s}",
            f"-seed={FLAGS.seed}",
            "-max_len=65536",
            f"-artifact_prefix={work}/",
            "-print_final_stats=1",
            str(work / "queue"),
            str(work / "corpus"),
        ],
        test_one_input,
        custom_mutator=mutator,
    )
    atheris.Fuzz()


def main(_):
    runs.resolve_outputs(FLAGS, "fuzz_decode")
    work = pathlib.Path(FLAGS.work_dir)
    if FLAGS.stage == "corpus":
        build_seed_corpus(work)
        return
    if FLAGS.stage == "fuzz":
        run_child(work)
        return
    (work / "queue").mkdir(parents=True, exist_ok=True)
    (work / "stats.json").unlink(missing_ok=True)
    # The corpus is built in a process of its own: Linux carries a process's peak RSS across fork and exec, so
    # a fuzzer started from a parent that had loaded every model would report (and be limited by) the parent's.
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--stage=corpus",
            f"--work_dir={work}",
            f"--seed_codecs={','.join(FLAGS.seed_codecs)}",
            *model_set_flag(),
            "--output_json=-",
        ],
        check=True,
        capture_output=True,
    )
    seeds = len(list((work / "corpus").glob("*.sfc")))
    start = time.time()
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--stage=fuzz",
            f"--runs={FLAGS.runs}",
            f"--work_dir={work}",
            f"--rss_margin_mb={FLAGS.rss_margin_mb}",
            f"--keep_recent={FLAGS.keep_recent}",
            f"--timeout_s={FLAGS.timeout_s}",
            f"--trim_every={FLAGS.trim_every}",
            f"--seed={FLAGS.seed}",
            *model_set_flag(),
            "--output_json=-",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")},
    )
    seconds = time.time() - start
    log = child.stderr
    (work / "fuzzer.log").write_text(log)
    stats = json.loads((work / "stats.json").read_text()) if (work / "stats.json").is_file() else {}
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    samples = [(int(n), int(m)) for n, m in re.findall(r"#(\d+)\s.*?rss: (\d+)Mb", log)]
    rss = [m for _, m in samples]
    failure = next(
        (
            line
            for line in log.splitlines()
            if re.search(
                r"ERROR: libFuzzer|Uncaught Python exception|FuzzFailure|out-of-memory|timeout|"
                r"Fatal Python error|corrupted|double free",
                line,
            )
        ),
        None,
    )
    interrupted = "run interrupted" in log  # Ctrl-C or a SIGINT to the fuzzer: stats so far
    clean = child.returncode == 0 or (interrupted and failure is None)
    from sfc_tf import zoo  # the registry alone: the name of the set the corpus was made with

    report = {
        "command": " ".join(
            [
                "python eval/fuzz_decode.py",
                f"--runs {FLAGS.runs}",
                f"--seed {FLAGS.seed}",
                f"--trim_every {FLAGS.trim_every}",
                f"--rss_margin_mb {FLAGS.rss_margin_mb}",
                *([f"--seed_codecs {','.join(FLAGS.seed_codecs)}"] if FLAGS.seed_codecs else []),
                *model_set_flag(),
            ]
        ),
        "model_set": zoo.model_set(FLAGS.model_set).name,
        "malloc_arena_max": int(os.environ.get("MALLOC_ARENA_MAX", "2")),
        "seed_files": seeds,
        "runs": int(done.group(1)) if done else stats.get("runs", 0),
        "interrupted": interrupted,
        "wall_time_s": round(seconds, 1),
        "exit_code": child.returncode,
        "crashes": 0 if clean else 1,
        "first_failure": failure,
        "silent_splices": 0 if clean else None,
        "peak_rss_mb": max(rss + [stats.get("peak_rss_mb", 0)]),
        "rss_margin_mb": FLAGS.rss_margin_mb,
        "peak_rss_mb_by_inputs": peak_by_tenth(samples, FLAGS.runs),
        "timeout_s": FLAGS.timeout_s,
        **{k: v for k, v in stats.items() if k not in ("runs", "peak_rss_mb")},
    }
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output_json)), exist_ok=True)
    pathlib.Path(FLAGS.output_json).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    if not clean:
        sys.exit(f"fuzz_decode: the fuzzer stopped ({failure}); inputs and log under {work}")


if __name__ == "__main__":
    app.run(main)
