"""Coding an archive of face images with Apache Beam: read, align, extract, code, write ``.sfc`` files and a
base-layer search index (``sfc_tf.apps.search``). The DirectRunner here; the same pipeline on Dataflow, Flink or Spark
with their pipeline options.

  python -m sfc_tf.apps.archive --input 'photos/*/*.jpg' --output archive/ [--enhancement jpeg --quality 50] \\
      -- --runner DirectRunner --direct_num_workers 2 --direct_running_mode multi_processing

Each image ``<folder>/<name>.<ext>`` becomes ``<output>/<folder>/<name>.sfc`` (the folder is the identity label of
the index, as in LFW), written whole or not at all; ``<output>/index.npz`` indexes every face's base layer. Every
batch of ``--batch_size`` faces is coded by ``sfc_tf.apps.batch_encode``, as ``sfc compress`` codes, with alignment
threads ahead of the networks; the files are the bytes each face gives alone, at any batch size.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio

from sfc_tf.apps.batch_encode import DEFAULT_BATCH
from sfc_tf.enhancement import registry
from sfc_tf.files import write_atomically

if TYPE_CHECKING:
    from sfc_tf.codec import Quality, ScalableCodec

# What ``EncodeFaces`` yields per face and ``write_index`` collects: (source path, label, decoded base-layer
# feature (D,), model-set id).
IndexRow = tuple[str, str, np.ndarray, int]

INDEX_FILE = "index.npz"


class EncodeFaces(beam.DoFn):
    """A batch of image paths -> their .sfc files written under ``output``;
    yields (source, label, decoded base-layer feature, model set)."""

    def __init__(
        self,
        output: str,
        enhancement: str,
        quality: Quality | None,
        mode: str,
        align: str,
        model_set: int | str | None,
        skip_existing: bool,
    ) -> None:
        super().__init__()
        self.output, self.enhancement, self.quality, self.mode = output, enhancement, quality, mode
        self.align, self.model_set, self.skip_existing = align, model_set, skip_existing
        self.codec: ScalableCodec | None = None

    def setup(self) -> None:
        from sfc_tf.codec import ScalableCodec

        self.codec = ScalableCodec.from_pretrained(self.model_set, align=self.align)

    def process(self, paths: list[str]) -> Iterator[IndexRow]:
        from sfc_tf import bitstream
        from sfc_tf.apps import batch_encode
        from sfc_tf.errors import located

        sources = [pathlib.Path(p) for p in paths]
        targets = [target_path(self.output, s) for s in sources]
        files = [t.read_bytes() if self.skip_existing and t.is_file() else None for t in targets]
        todo = [i for i, f in enumerate(files) if f is None]
        outcomes = batch_encode.encode_files(
            self.codec, [sources[i] for i in todo], self.enhancement, self.quality, self.mode
        )
        for i, outcome in zip(todo, outcomes):
            if outcome.error is not None:
                raise located(outcome.error, str(sources[i]))
            files[i] = outcome.data
            write_atomically(targets[i], files[i])
        for source, data, decoded in zip(sources, files, self.codec.decode_many(files, "base")):
            yield str(source), source.parent.name, decoded.feature, bitstream.unpack_base(data).model_set


def target_path(output: str, source: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(output) / source.parent.name / (source.stem + ".sfc")


def write_index(rows: list[IndexRow], output: str) -> str:
    """The base-layer search index of every coded face (one model set), sorted by source."""
    from sfc_tf.apps.search import SearchIndex
    from sfc_tf.codec import ScalableCodec

    rows = sorted(rows, key=lambda row: row[0])
    index = SearchIndex.from_features(
        ScalableCodec.from_pretrained(),
        np.stack([row[2] for row in rows]),
        [row[1] for row in rows],
        [row[0] for row in rows],
        [row[3] for row in rows],
    )
    path = pathlib.Path(output) / INDEX_FILE
    index.save(path)
    return str(path)


def pipeline(
    root: beam.Pipeline,
    input_patterns: list[str],
    output: str,
    enhancement: str = "none",
    quality: Quality | None = None,
    mode: str = "auto",
    align: str = "mtcnn",
    model_set: int | str | None = None,
    batch_size: int = DEFAULT_BATCH,
    skip_existing: bool = False,
) -> beam.PCollection:
    """Adds the archive-coding transforms to the Beam pipeline ``root``; returns the PCollection of the index
    path."""
    return (
        root
        | "patterns" >> beam.Create(input_patterns)
        | "match" >> fileio.MatchAll()
        | "paths" >> beam.Map(lambda metadata: metadata.path)
        | "batch" >> beam.BatchElements(min_batch_size=batch_size, max_batch_size=batch_size)
        | "encode" >> beam.ParDo(EncodeFaces(output, enhancement, quality, mode, align, model_set, skip_existing))
        | "collect" >> beam.combiners.ToList()
        | "index" >> beam.Map(write_index, output)
    )


def run(argv: list[str] | None = None) -> None:
    """Command line: the archive's flags, then ``--`` and Beam's pipeline options."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from sfc_tf.bitstream import ALIGNMENTS
    from sfc_tf.codec import AUTO, MODE_CHOICES

    argv = sys.argv[1:] if argv is None else argv
    ours, beam_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m sfc_tf.apps.archive", description=__doc__.splitlines()[0])
    parser.add_argument("--input", action="append", required=True, help="image glob (repeatable)")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--enhancement", default=registry.NO_ENHANCEMENT, choices=registry.ENHANCEMENTS)
    parser.add_argument("--quality", default=None)
    parser.add_argument("--mode", default=AUTO, choices=MODE_CHOICES)
    parser.add_argument("--align", default="mtcnn", choices=ALIGNMENTS)
    parser.add_argument("--model_set", default=None)
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH, help="faces per network call, 1..64")
    parser.add_argument("--skip_existing", action="store_true", help="keep .sfc files already written (resume)")
    args = parser.parse_args(ours)
    quality = registry.check_quality(args.enhancement, args.quality, model_set=args.model_set)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as root:
        pipeline(
            root,
            args.input,
            args.output,
            args.enhancement,
            quality,
            args.mode,
            args.align,
            args.model_set,
            args.batch_size,
            args.skip_existing,
        )


if __name__ == "__main__":
    run()
