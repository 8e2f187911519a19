"""Pretrained models: what the model-set byte of an ``.sfc`` file means, and the learned enhancement families.

The registry lives in ``zoo.json`` inside the checkpoints directory (``settings.checkpoints_dir()``):

  model_sets  id (1..127, the byte a file stores) -> FaceNet key, base-layer model, reconstructor (the picture
              shown at the "reconstruction" level) and coding predictor (mean face + MMSE network); each model
              with the id it must have when loaded (its sha256), so a swapped file is caught at load time.
  learned     family name -> kind (``residual``: codes min-max(x - p); ``original``: codes x; ``conditional``:
              codes x given p) and its rate ladder, quality 1..N from the lowest rate up (a checkpoint
              directory, or a checkpoint and the rate index of a variable-rate model).
  defaults    the model set, and the learned families ``sfc`` uses when none is named (a model set may name its
              own, under ``learned``: the families trained on its predictions).
  verification  the squared-L2 threshold on mean-centred base-layer features that ``sfc compare`` applies.

A model set built from files outside the registry (a user's own training) gets an id of 128..255: the top bit and
seven bits of a hash of its models' ids.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pathlib

from sfc_tf import settings
from sfc_tf.errors import ModelMismatchError, WeightsError

ZOO_FILE = "zoo.json"
FIRST_CUSTOM_ID = 128


@dataclasses.dataclass(frozen=True)
class ModelSet:
    """The models one .sfc file needs, as paths (absolute, or relative to the checkpoints directory)."""

    id: int
    name: str
    base_layer: str
    reconstructor: str
    predictor: str | None = None
    facenet: str = "20180408-102900"
    ids: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)  # model -> expected sha256
    learned: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)  # kind -> family name

    def path(self, model: str) -> pathlib.Path:
        value = getattr(self, model)
        if value is None:
            raise WeightsError(f"model set {self.name!r} has no {model}")
        return settings.checkpoints_dir() / value

    def check(self, model: str, actual_id: str) -> None:
        """A loaded model's id against the one registered for this set."""
        expected = self.ids.get(model)
        if expected is not None and expected != actual_id:
            raise WeightsError(
                f"{self.path(model)} is not the {model} of model set {self.name!r} "
                f"(id {actual_id[:12]}, registered {expected[:12]})"
            )


@dataclasses.dataclass(frozen=True)
class LearnedFamily:
    name: str
    kind: str  # residual | original | conditional
    rates: tuple  # per quality 1..N: (checkpoint path, rate index or None)
    direct: str | None = None  # the family that codes the face itself (mode none) for the other prediction modes
    mode: str | None = None  # the prediction it was trained against (none for the original kind)
    description: str = ""
    direct_qualities: tuple | None = None  # the direct family's quality for each of ours (default: the same)

    @property
    def qualities(self) -> range:
        """The family's qualities, 1..N."""
        return range(1, len(self.rates) + 1)

    def direct_quality(self, quality: int) -> int:
        """The quality of the direct family that stands in for our ``quality`` (the nearest lambda)."""
        return self.direct_qualities[quality - 1] if self.direct_qualities else quality

    def checkpoint(self, quality: int) -> tuple[pathlib.Path, int | None]:
        if not 1 <= quality <= len(self.rates):
            raise ValueError(f"learned family {self.name!r} has qualities 1..{len(self.rates)}, not {quality}")
        path, rate = self.rates[quality - 1]
        return settings.checkpoints_dir() / path, rate


def custom_id(model_ids: list[str]) -> int:
    """Id of a model set outside the registry: 128 + seven bits of the sha256 of its models' ids."""
    return FIRST_CUSTOM_ID | hashlib.sha256("\n".join(model_ids).encode()).digest()[0] & 0x7F


@functools.lru_cache(maxsize=4)
def _load(directory: str) -> dict:
    path = pathlib.Path(directory) / ZOO_FILE
    if not path.is_file():
        raise WeightsError(
            f"no model registry at {path}: run `sfc install-models CHECKOUT/checkpoints` (a checkout "
            f"of the sfc_tf repository has them) or set $SFC_TF_CHECKPOINTS to a checkpoints directory"
        )
    return json.loads(path.read_text())


def registry() -> dict:
    return _load(str(settings.checkpoints_dir()))


def model_sets() -> dict[int, ModelSet]:
    return {
        entry["id"]: ModelSet(**{k: v for k, v in entry.items() if k != "note"}) for entry in registry()["model_sets"]
    }


def model_set(key: int | str | None = None) -> ModelSet:
    """A registered model set by id (an int, or its digits as given on a command line) or name (``None``: the
    default)."""
    sets = model_sets()
    key = registry()["defaults"]["model_set"] if key is None else key
    for entry in sets.values():
        if key in (entry.id, entry.name, str(entry.id)):
            return entry
    raise ModelMismatchError(
        f"no model set {key!r} in the registry; registered: " + ", ".join(f"{s.id} ({s.name})" for s in sets.values())
    )


def learned_families() -> dict[str, LearnedFamily]:
    return {
        entry["name"]: LearnedFamily(
            entry["name"],
            entry["kind"],
            tuple((path, rate) for path, rate in entry["rates"]),
            entry.get("direct"),
            entry.get("mode"),
            entry.get("description", ""),
            tuple(entry["direct_qualities"]) if "direct_qualities" in entry else None,
        )
        for entry in registry()["learned"]
    }


@dataclasses.dataclass(frozen=True)
class RetiredModel:
    """A learned model that files may name but this registry no longer ships."""

    family: str
    quality: int
    commit: str  # the last commit of the sfc_tf repository that ships it
    replaced_by: str | None

    def message(self, codec: str, model_id: int) -> str:
        return (
            f"this file needs {codec} model {model_id:04x}, quality {self.quality} of the retired family "
            f"{self.family}" + (f" (replaced by {self.replaced_by})" if self.replaced_by else "") + ": to decode "
            f"it, `sfc install-models CHECKOUT/checkpoints --target DIR` from a checkout of sfc_tf at commit "
            f"{self.commit}, then decode with SFC_TF_CHECKPOINTS=DIR"
        )


def retired_models() -> dict[tuple[str, int], RetiredModel]:
    """(codec name, two-byte model id) -> the retired model a file may name."""
    return {
        (entry["codec"], int(model_id, 16)): RetiredModel(
            entry["name"], quality, entry["commit"], entry.get("replaced_by")
        )
        for entry in registry().get("retired", [])
        for model_id, quality in entry["models"]
    }


def default_family_name(kind: str, for_set: ModelSet | None = None) -> str | None:
    """The name of model set ``for_set``'s learned family of ``kind`` (its own, else the registry's default; ``None``
    if neither names one)."""
    return (for_set or model_set()).learned.get(kind) or registry()["defaults"]["learned"].get(kind)


def learned_family(name: str | None = None, kind: str | None = None, for_set: ModelSet | None = None) -> LearnedFamily:
    """A learned family by name, or the default family of ``kind`` for model set ``for_set`` (its own if it names
    one, else the registry's; ``None``: the default model set)."""
    families = learned_families()
    if name is None:
        name = default_family_name(kind, for_set)
    if name not in families:
        raise ValueError(f"no learned family {name!r}; registered: {', '.join(families)}")
    return families[name]


def referenced_paths(registry_data: dict) -> list[str]:
    """Every file or directory (relative to the checkpoints directory) a registry names."""
    paths = [
        entry[model]
        for entry in registry_data["model_sets"]
        for model in ("base_layer", "reconstructor", "predictor")
        if entry.get(model)
    ]
    paths += [path for family in registry_data["learned"] for path, _ in family["rates"]]
    return sorted(set(paths))


def install(source: str | pathlib.Path, target: str | pathlib.Path | None = None) -> tuple[pathlib.Path, int]:
    """Copy the registry of ``source`` (a checkpoints directory, e.g. of a repository checkout) and every model it
    names to ``target`` (default: ``<cache>/checkpoints``, where an installed package looks); whole or not at all.
    Returns the target and the bytes copied. Each model's sha256 is checked when it is loaded."""
    import os
    import shutil
    import tempfile

    source = pathlib.Path(source)
    if not (source / ZOO_FILE).is_file():
        raise WeightsError(f"no model registry ({ZOO_FILE}) in {source}")
    target = pathlib.Path(target) if target is not None else settings.cache_dir() / "checkpoints"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".checkpoints.", dir=target.parent))
    try:
        data = json.loads((source / ZOO_FILE).read_text())
        for relative in referenced_paths(data):
            origin = source / relative
            if not origin.exists():
                raise WeightsError(f"{source / ZOO_FILE} names {relative}, which is missing")
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if origin.is_dir() else shutil.copy2)(origin, staging / relative)
        shutil.copy2(source / ZOO_FILE, staging / ZOO_FILE)
        size = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _load.cache_clear()
    return target, size


def verification_threshold() -> float:
    return float(registry()["verification"]["threshold"])
