"""Benchmark recipes: a YAML file with ``model``, ``data`` and ``train`` sections, checked on load."""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from melodylm.errors import UserError
from melodylm.models.lm_module import LanguageModelModule
from melodylm.pianoroll import ENCODINGS


@dataclass
class DataRecipe:
    seq_len: int = 512  # training window in tokens
    batch_size: int = 32
    eval_batch_size: int = 32
    transpose: tuple[int, int] = (-6, 5)  # a random shift in LOW..HIGH per training window (per piece if carried)
    encoding: str = "keys"  # frame serialisation: keys (active keys per frame), changes or hold (see pianoroll.py)
    carry_state: bool = False  # walk each piece window by window, carrying the LSTM state (batches.PieceStreams)


@dataclass
class TrainRecipe:
    max_epochs: int = 20
    gradient_clip_val: float = 1.0
    seed: int = 0
    patience: int = 0  # early stopping on the validation NLL per frame (0: off)


@dataclass
class Recipe:
    model: dict = field(default_factory=dict)  # LanguageModelModule arguments (vocab_size comes from the data)
    data: DataRecipe = field(default_factory=DataRecipe)
    train: TrainRecipe = field(default_factory=TrainRecipe)

    def to_dict(self) -> dict:
        return asdict(self)


def _section(cls, values: dict, name: str, path: Path):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"{path}: unknown key(s) in {name}: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if "transpose" in values:
        values = {**values, "transpose": tuple(values["transpose"])}
    return cls(**values)


def load_recipe(path: str | Path | None) -> Recipe:
    """The recipe in ``path`` (None: the defaults), with a clear error for any unknown key.

    ``model`` holds :class:`LanguageModelModule` arguments (its ``vocab_size`` comes from the data).
    """
    if path is None:
        return Recipe()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML: {err}") from err
    unknown = sorted(set(raw) - {"model", "data", "train"})
    if unknown:
        raise UserError(f"{path}: unknown section(s) {', '.join(unknown)} (expected model, data, train)")
    model = raw.get("model") or {}
    allowed = set(inspect.signature(LanguageModelModule.__init__).parameters) - {"self", "vocab_size"}
    bad = sorted(set(model) - allowed)
    if bad:
        raise UserError(f"{path}: unknown model argument(s) {', '.join(bad)} (known: {', '.join(sorted(allowed))})")
    recipe = Recipe(model=model, data=_section(DataRecipe, raw.get("data") or {}, "data", path),
                    train=_section(TrainRecipe, raw.get("train") or {}, "train", path))
    if recipe.data.encoding not in ENCODINGS:
        raise UserError(f"{path}: data.encoding must be one of {', '.join(ENCODINGS)}, got {recipe.data.encoding!r}")
    low, high = recipe.data.transpose
    if low > 0 or high < 0:
        raise UserError(f"{path}: data.transpose must include 0, got {recipe.data.transpose}")
    return recipe
