"""Export the codec's networks as SavedModels in TF Serving's layout ``<export_dir>/<model>/<version>/``.

  python train/export.py --export_dir serving/models --models facenet,reconstructor,predictor,enhancement \\
      --enhancement CHECKPOINTS/enhancement/hyperprior_conditional --enhancement_quality 3

Without ``--export_dir`` the models go to runs/export/<time>/ (sfc_tf.runs). A version folder that exists is
refused unless ``--overwrite``.

``--reconstructor``, ``--predictor`` and ``--enhancement`` default to the models of ``--model_set`` (default: the
registry's default set, ``sfc models``): serve the set the clients code with (``sfc --model_set``).

Models: facenet (offline FaceNet weights), reconstructor, predictor (the coding predictor of prediction mode
``mmse``), enhancement (one rate of a learned codec: encode/decode), decoder (the paper's full decode:
reconstructor + residual-codec decode + residual add; residual codecs only). Signatures: docs/exports.md.
"""

import functools

from absl import app, flags

from sfc_tf import runs, zoo
from sfc_tf.base import base_layer
from sfc_tf.enhancement import learned, prediction, registry
from sfc_tf.errors import SfcError
from sfc_tf.reconstruction import decoder
from sfc_tf.serving import exports

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "export_dir", None, "Root of the model repository (one folder per model); default: runs/export/<time>."
)
flags.DEFINE_list(
    "models",
    [exports.FACENET, exports.RECONSTRUCTOR, exports.ENHANCEMENT, exports.DECODER],
    f"Models to export, from {list(exports.MODEL_NAMES)}.",
)
flags.DEFINE_integer("version", 1, "Version folder to write (must not exist).")
flags.DEFINE_string("facenet_weights", None, "Keras FaceNet weights; default: the converted offline weights.")
flags.DEFINE_string("model_set", None, "Registered model set giving the defaults below (default: the default set).")
flags.DEFINE_string("reconstructor", None, "Reconstructor directory or checkpoint prefix; default: the model set's.")
flags.DEFINE_string("predictor", None, "Coding predictor directory; default: the model set's.")
flags.DEFINE_string(
    "enhancement", None, "Learned checkpoint; default: the model set's residual family at sfc's default quality."
)
flags.DEFINE_integer("enhancement_quality", 1, "Quality index 1..N of a variable-rate checkpoint (as sfc --quality).")
runs.define_flags(trainer=False)


def main(_):
    # Each checkpoint loads once (building the learned codec's range-coding tables takes a while).
    model_set = functools.cache(lambda: zoo.model_set(FLAGS.model_set))  # the registry only if a default is used
    reconstructor_path = functools.cache(lambda: FLAGS.reconstructor or model_set().path("reconstructor"))
    predictor_path = functools.cache(lambda: FLAGS.predictor or model_set().path("predictor"))
    enhancement_path = functools.cache(
        lambda: FLAGS.enhancement
        or registry.learned_family("learned", model_set=model_set()).checkpoint(
            registry.check_quality("learned", model_set=model_set())
        )[0]
    )
    reconstructor = functools.cache(lambda: decoder.load_reconstructor(reconstructor_path()))
    predictor = functools.cache(lambda: prediction.load_network(predictor_path()))

    @functools.cache
    def coder():
        model, meta = learned.load_model(enhancement_path())
        rates = len(meta.get("lmbdas", [meta.get("lmbda")]))
        if not 1 <= FLAGS.enhancement_quality <= rates:
            raise SfcError(f"{enhancement_path()} has qualities 1..{rates}, not {FLAGS.enhancement_quality}")
        return learned.RateCoder(model, FLAGS.enhancement_quality - 1)

    loaders = {
        exports.FACENET: lambda: exports.load_facenet(weights_path=FLAGS.facenet_weights),
        exports.RECONSTRUCTOR: lambda: exports.ReconstructorExport(reconstructor(), reconstructor().feature_dim),
        exports.PREDICTOR: lambda: exports.ReconstructorExport(predictor(), predictor().feature_dim, exports.PREDICTOR),
        exports.ENHANCEMENT: lambda: exports.EnhancementExport(coder()),
        exports.DECODER: lambda: exports.DecoderExport(reconstructor(), reconstructor().feature_dim, coder()),
    }
    sources = {  # what each export's assets/provenance.json names
        exports.FACENET: lambda: {"facenet": FLAGS.facenet_weights},
        exports.RECONSTRUCTOR: lambda: {"reconstructor": reconstructor_path()},
        exports.PREDICTOR: lambda: {"predictor": predictor_path()},
        exports.ENHANCEMENT: lambda: {"enhancement": enhancement_path()},
        exports.DECODER: lambda: {"reconstructor": reconstructor_path(), "enhancement": enhancement_path()},
    }
    unknown = set(FLAGS.models) - set(loaders)
    if unknown:
        raise SystemExit(f"export: unknown models {sorted(unknown)}; choose from {list(exports.MODEL_NAMES)}")
    export_dir = FLAGS.export_dir or runs.default_dir("export")
    models = list(FLAGS.models)
    uses_set = FLAGS.model_set is not None or FLAGS.reconstructor is None  # a given reconstructor names no set
    if exports.DECODER in models and uses_set and base_layer.load(model_set().path("base_layer")).thumbnail is not None:
        reason = (
            f"model set {model_set().name!r} codes a colour thumbnail, which the decoder graph does not apply: "
            "export its reconstructor and enhancement instead (the client applies the thumbnail)"
        )
        if FLAGS["models"].present:
            raise SystemExit(f"export: {reason}")
        print(f"decoder: not exported ({reason})")
        models.remove(exports.DECODER)
    for name in models:
        try:
            module = loaders[name]()
            record = exports.provenance(sources[name](), model_set().name if uses_set else None)
            if name in (exports.ENHANCEMENT, exports.DECODER):
                record["enhancement_quality"] = FLAGS.enhancement_quality
            print(f"{name} -> {exports.export(module, export_dir, FLAGS.version, record, FLAGS.overwrite)}")
        except (SfcError, FileExistsError, ValueError) as exc:
            raise SystemExit(f"export {name}: {exc}") from exc


if __name__ == "__main__":
    app.run(main)
