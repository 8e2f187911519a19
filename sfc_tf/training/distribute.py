"""tf.distribute strategy selection shared by the training binaries, and where each worker writes."""

import contextlib
import functools
import pathlib
import shutil
import tempfile

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


@functools.lru_cache(maxsize=None)
def make_strategy(name: str = "default", tpu_address: str = "") -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (all local GPUs), ``multi_worker`` (TF_CONFIG cluster),
    ``tpu`` (``tpu_address``, empty for the local/Colab TPU); one per process. ``multi_worker`` must be made
    before any other TensorFlow op runs (binaries call this first)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")


def task(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    """(task type, index) of this process in a multi-worker cluster; (None, 0) outside one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one process that writes a run's outputs: the chief, worker 0 of a cluster without one, or the
    only process outside a cluster."""
    task_type, index = task(strategy)
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and index == 0 and "chief" not in strategy.cluster_resolver.cluster_spec().as_dict()


@contextlib.contextmanager
def output_dir(directory, strategy: tf.distribute.Strategy):
    """The directory this process writes a run's final outputs to: ``directory`` on the chief; a private
    temporary one, removed afterwards, on the other workers (which run the same saving code, as
    MultiWorkerMirroredStrategy expects, without racing the chief for the same files)."""
    if is_chief(strategy):
        yield pathlib.Path(directory)
        return
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="sfc_worker_"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
