"""What each notebook parameter may be: its type where the default (None) does not say, and its range.

:func:`kadapter.notebook_run.check_parameters` reads a parameter's type from its default in the notebook's
``parameters`` cell; a default of ``None`` says nothing, and a default says nothing about ranges. :data:`SCHEMA`
fills both in, per parameter name (a name means the same in every notebook; ``"<notebook stem>.<name>"`` where one
notebook differs), so ``--set 02_adapter_pretraining.tap_layers=5`` or ``k=0`` is refused before any kernel starts.
``None`` stays allowed where the notebook reads it as "not set / the default", except where ``nullable=False``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Spec:
    kind: type | tuple[type, ...] | None = None  # int, float, str, list, dict (None: the default's type)
    items: type | None = None  # a list's items
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # strictly greater than
    below: float | None = None  # strictly less than
    choices: tuple | None = None
    nullable: bool = True


COUNT = Spec(int, minimum=1)  # a number of examples, epochs, sizes ...
COUNT0 = Spec(int, minimum=0)  # ... where 0 means "none"
RATE = Spec(float, above=0)
FRACTION = Spec(float, above=0, below=1)
TEXT = Spec(str)
SEED = Spec(int)
REQUIRED_COUNT = Spec(int, minimum=1, nullable=False)
LAYERS = Spec(list, items=int, minimum=0)

SCHEMA: dict[str, Spec] = {
    # model shape
    "backbone": TEXT, "tap_layers": LAYERS, "adapter_hidden_size": REQUIRED_COUNT, "adapter_heads": REQUIRED_COUNT,
    "adapter_intermediate_size": REQUIRED_COUNT, "adapter_transformer_layers": REQUIRED_COUNT,
    "device": TEXT, "fusion": Spec(str, choices=("concat", "add")),
    # data sizes (None: all)
    "limit": COUNT, "min_examples": COUNT0, "alignment_docs": COUNT0, "spacy_sentences": COUNT0,
    "arc_examples": COUNT0, "walkthrough_doc": COUNT0, "train_examples": COUNT, "dev_examples": COUNT,
    "corpus_sentences": COUNT, "05_probing_demo.corpus_sentences": COUNT0, "facts_per_relation": COUNT,
    "examples_shown": COUNT0, "dev_fraction": FRACTION, "mask_prob": Spec(float, above=0, maximum=1),
    "relations": Spec(list, items=str), "seeds": Spec(list, items=int, nullable=False),
    "adapter_kinds": Spec(list, items=str, choices=("factual", "linguistic")), "prompts": Spec(list, items=str),
    "vocabulary": Spec(str, choices=("common", "full")),
    "05_probing_demo.vocabulary": Spec(str, choices=("auto", "common", "full")),
    # training
    "epochs": REQUIRED_COUNT, "trained_epochs": COUNT, "batch_size": REQUIRED_COUNT, "probe_batch_size": COUNT,
    "max_length": Spec((int, dict), minimum=8), "learning_rate": Spec(float, above=0, nullable=False),
    "learning_rates": Spec(list, items=float, above=0), "adapter_learning_rate": RATE,
    "backbone_learning_rate": RATE, "warmup_ratio": Spec(float, minimum=0, below=1), "patience": COUNT0,
    "num_threads": COUNT, "seed": SEED, "random_adapter_seed": SEED, "control_seed": SEED, "masking_seed": SEED,
    "storage_dtype": Spec(str, choices=("float32", "float16", "bfloat16")),
    # folders and files (None: not given / the default place)
    "factual_data_dir": TEXT, "cache_dir": TEXT, "cache_root": TEXT, "feature_cache": TEXT, "factual_stats": TEXT,
    "factual_adapter": TEXT, "linguistic_adapter": TEXT, "google_re": TEXT, "probe_set": TEXT, "runs_dir": TEXT,
    "output_dir": Spec(str, nullable=False),
    # choices given as structures
    "stand_in_adapter": Spec(dict), "adapter_combinations": Spec(list, items=list),
    # the demo: its slider's range
    "k": Spec(int, minimum=1, maximum=30, nullable=False),
}


def spec_for(notebook_stem: str, name: str) -> Spec | None:
    return SCHEMA.get(f"{notebook_stem}.{name}", SCHEMA.get(name))


_KIND_NAMES = {int: "int", float: "float", str: "str", list: "list", dict: "dict", bool: "bool", tuple: "tuple"}


def is_kind(value, kind) -> bool:
    """``value`` is of ``kind`` as a notebook reads it: bools are not numbers, ints are floats, tuples lists."""
    if isinstance(kind, tuple):
        return any(is_kind(value, k) for k in kind)
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in (list, tuple):
        return isinstance(value, (list, tuple))
    return isinstance(value, kind)


def kind_name(kind) -> str:
    if isinstance(kind, tuple):
        return " or ".join(kind_name(k) for k in kind)
    return _KIND_NAMES.get(kind, getattr(kind, "__name__", str(kind)))


def problem(spec: Spec, value, default_kind=None) -> str:
    """Why ``value`` does not fit ``spec`` ("" when it does); ``default_kind``: the type of the notebook's default."""
    if value is None:
        return "" if spec.nullable else "expected a value, got None"
    kind = spec.kind or default_kind
    expected = kind_name(kind) + (f" of {kind_name(spec.items)}" if spec.items is not None else "")
    if kind is not None and not is_kind(value, kind):
        return f"expected {expected}, got {type(value).__name__} {value!r:.60}"
    if spec.items is not None and any(not is_kind(v, spec.items) for v in value):
        return f"expected {expected}, got {value!r:.60}"
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    for v in values:
        said = _range_problem(spec, v)
        if said:
            return said
    return ""


def _range_problem(spec: Spec, v) -> str:
    if spec.choices is not None and v not in spec.choices:
        return f"expected one of {list(spec.choices)}, got {v!r}"
    if not is_kind(v, float):
        return ""
    if isinstance(v, float) and not math.isfinite(v):
        return f"expected a finite number, got {v!r}"
    if spec.minimum is not None and v < spec.minimum:
        return f"expected at least {spec.minimum:g}, got {v!r}"
    if spec.maximum is not None and v > spec.maximum:
        return f"expected at most {spec.maximum:g}, got {v!r}"
    if spec.above is not None and v <= spec.above:
        return f"expected more than {spec.above:g}, got {v!r}"
    if spec.below is not None and v >= spec.below:
        return f"expected less than {spec.below:g}, got {v!r}"
    return ""
