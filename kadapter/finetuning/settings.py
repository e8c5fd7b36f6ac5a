"""Fine-tuning settings: what one row of a results table trains (:class:`Setting`), the standard comparison,
the adapters a setting uses (pre-trained, or freshly initialised "w/o knowledge"), and the run configuration
(:class:`FineTuneConfig`)."""
from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from ..adapter import CONFIG_NAME, KnowledgeAdapter
from ..backbone import backbone_identity
from ..config import AdapterConfig, FusionConfig

#: Short letters used in setting names, and the adapter names they stand for.
ADAPTER_LETTERS = {"F": "factual", "L": "linguistic"}
RANDOM_INIT = "random"


@dataclass
class Setting:
    """One row of a results table: what sits on the backbone and what is trained.

    ``adapters`` maps adapter names to saved adapter directories. With ``knowledge=False`` ("w/o knowledge")
    each adapter keeps the architecture read from its directory but starts from a fresh initialisation, exactly
    where knowledge pre-training starts, and no pre-trained weights are loaded. ``baseline="majority"`` trains
    nothing and predicts the training majority.
    """

    name: str
    adapters: dict[str, str] = field(default_factory=dict)
    knowledge: bool = True
    adapters_trainable: bool = False
    fusion: str = "concat"
    backbone_trainable: bool = False
    baseline: str | None = None

    def __post_init__(self) -> None:
        FusionConfig(self.fusion)  # validates the mode
        if self.baseline not in (None, "majority"):
            raise ValueError(f"unknown baseline {self.baseline!r}")
        if not self.knowledge and not self.adapters:
            raise ValueError(f"setting {self.name!r}: 'w/o knowledge' needs adapters whose architecture to copy")
        self.adapters = {name: str(path) for name, path in self.adapters.items()}

    @property
    def mode(self) -> str:
        """How its features are computed: ``baseline``, ``pooled`` (everything below the fusion frozen),
        ``taps`` (trained adapters over cached backbone states) or ``tokens`` (the backbone is trained)."""
        if self.baseline:
            return "baseline"
        if self.backbone_trainable:
            return "tokens"
        return "taps" if self.adapters and self.adapters_trainable else "pooled"

    def adapter_keys(self, random_seed: int | None) -> dict[str, str]:
        """Adapter name -> identity of its (frozen) weights, so identical adapters are computed once."""
        if self.knowledge:
            return {name: f"{name}@{path}" for name, path in self.adapters.items()}
        return {name: f"{name}@{path}#{RANDOM_INIT}{random_seed}" for name, path in self.adapters.items()}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Setting":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def setting_name(letters: Sequence[str], *, knowledge: bool = True, adapters_trainable: bool = False,
                 fusion: str = "concat", backbone_trainable: bool = False) -> str:
    """``backbone``, ``+F``, ``+F+L``, ``+F (w/o knowledge, frozen)`` ...; a trained backbone or ``add`` fusion
    is spelled out after a ``|`` so two regimes never share a name."""
    name = "".join(f"+{x}" for x in letters) if letters else "backbone"
    if not knowledge:
        name += f" (w/o knowledge, {'trained' if adapters_trainable else 'frozen'})"
    elif adapters_trainable and letters:
        name += " (adapters trained)"
    if fusion != "concat" and letters:
        name += f" | {fusion} fusion"
    if backbone_trainable:
        name += " | backbone trained"
    return name


def standard_settings(adapter_dirs: Mapping[str, str | Path], *, fusion: str = "concat",
                      backbone_trainable: bool = False, combinations: Sequence[str] = ("F", "L", "F+L"),
                      controls: Sequence[str] = ("F", "F+L"), trained_controls: Sequence[str] = ("F",),
                      trained_combinations: Sequence[str] = (), majority: bool = True) -> list[Setting]:
    """The comparison of issues 5 and 7 on one task.

    ``adapter_dirs`` maps letters (``F``, ``L``) to saved adapter directories. Rows: ``majority``, ``backbone``,
    each knowledge combination (adapters frozen, as in the paper), then the "w/o knowledge" controls: for each
    combination in ``controls`` the same adapters freshly initialised and frozen, and for each in
    ``trained_controls`` the same but trained on the task (capacity matched on both sides). Each combination in
    ``trained_combinations`` adds a row whose pre-trained adapters are trained on the task too: against the trained
    control, only the starting point differs (knowledge or a random draw).
    """
    def adapters(combo: str) -> dict[str, str]:
        letters = combo.split("+")
        missing = [x for x in letters if x not in adapter_dirs]
        if missing:
            raise ValueError(f"no adapter directory for {missing} (have {sorted(adapter_dirs)})")
        return {ADAPTER_LETTERS.get(x, x): str(adapter_dirs[x]) for x in letters}

    common = dict(fusion=fusion, backbone_trainable=backbone_trainable)
    settings = [Setting("majority", baseline="majority")] if majority else []
    settings.append(Setting(setting_name((), backbone_trainable=backbone_trainable),
                            backbone_trainable=backbone_trainable))
    for combo in combinations:
        settings.append(Setting(setting_name(combo.split("+"), **common), adapters(combo), **common))
    for combo in trained_combinations:
        settings.append(Setting(setting_name(combo.split("+"), adapters_trainable=True, **common), adapters(combo),
                                adapters_trainable=True, **common))
    for combo, trained in [(c, False) for c in controls] + [(c, True) for c in trained_controls]:
        settings.append(Setting(setting_name(combo.split("+"), knowledge=False, adapters_trainable=trained,
                                             **common),
                                adapters(combo), knowledge=False, adapters_trainable=trained, **common))
    return settings


def build_adapter(setting: Setting, name: str, backbone_identity_, seed: int | None) -> KnowledgeAdapter:
    """The adapter `name` of a setting: its saved weights, or ("w/o knowledge") a fresh one of the same
    architecture initialised from `seed`."""
    path = Path(setting.adapters[name])
    if setting.knowledge:
        return KnowledgeAdapter.from_pretrained(path, backbone=backbone_identity_)
    payload = json.loads((path / CONFIG_NAME).read_text())
    with torch.random.fork_rng():
        torch.manual_seed(random_init_seed(seed, name))
        return KnowledgeAdapter(AdapterConfig.from_dict(payload["adapter"]), backbone_identity_)


def random_init_seed(seed: int | None, name: str) -> int:
    """The torch seed of a "w/o knowledge" adapter: its run seed and its name, so that two random adapters of
    one setting (``+F+L`` w/o knowledge) are two different draws."""
    return (seed or 0) * 1_000_003 + zlib.crc32(name.encode())


def save_untrained_adapter(directory: str | Path, backbone, config: AdapterConfig, seed: int = 0,
                           **metadata) -> Path:
    """A freshly initialised adapter saved as a directory: stands in for a trained adapter in smoke runs and
    tests (so they never depend on ``runs/``)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        adapter = KnowledgeAdapter(config, backbone_identity(backbone))
    return adapter.save_pretrained(directory, untrained=True, **metadata)


def resolve_adapter_dirs(paths: Mapping[str, str | Path | None], backbone, stand_in: Mapping | None = None,
                         stand_in_root: str | Path | None = None) -> tuple[dict[str, str], bool]:
    """Adapter directories by letter. A missing directory is an error, unless `stand_in` (an AdapterConfig as a
    dict) is given: then a freshly initialised adapter is saved under `stand_in_root` in its place (smoke runs),
    and the second value says so — results from stand-ins must be labelled as untrained."""
    resolved, untrained = {}, False
    for letter, path in paths.items():
        if path is not None and (Path(path) / CONFIG_NAME).is_file():
            resolved[letter] = str(path)
            continue
        if stand_in is None:
            raise FileNotFoundError(f"adapter {letter}: {path} is not a saved adapter directory (pre-train it first, "
                                    "or pass a stand-in size for a smoke run)")
        seed = sorted(paths).index(letter) + 1
        resolved[letter] = str(save_untrained_adapter(Path(stand_in_root) / f"untrained_{letter}", backbone,
                                                      AdapterConfig.from_dict(dict(stand_in)), seed=seed,
                                                      stands_in_for=str(path)))
        untrained = True
    return resolved, untrained



@dataclass
class FineTuneConfig:
    epochs: int = 10
    # Settings that train adapters or the backbone cost a full adapter/backbone pass per step: their own epoch
    # budget (None: `epochs`). Every setting still picks its best epoch on dev.
    trained_epochs: int | None = None
    batch_size: int = 32
    learning_rate: float = 1e-3  # fusion + head on frozen features
    # Settings whose backbone and adapters are frozen are cheap: each run may try several learning rates and keep
    # the best on dev (a linear probe on frozen features is very sensitive to it). None/empty: `learning_rate`.
    learning_rates: tuple[float, ...] | None = None
    adapter_learning_rate: float = 5e-4  # settings whose adapters are trained (the adapter pre-training rate)
    backbone_learning_rate: float = 2e-5  # settings whose backbone is trained (the paper's recipe)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    patience: int | None = 3  # epochs without dev improvement before stopping
    dropout: float = 0.1
    max_length: int = 128
    feature_batch_size: int = 64
    eval_batch_size: int = 256
    # The "w/o knowledge" adapters are initialised from this seed, once, and shared by every run seed: the
    # knowledge adapters are also one fixed draw. None: a fresh random adapter per run seed (costs one more
    # adapter pass over the data per seed when frozen).
    random_adapter_seed: int | None = 0
    cache_root: str | None = None  # the backbone feature cache (None: $KADAPTER_CACHE or ~/.cache/kadapter)
    cache_dtype: str = "float16"
    # False: delete the task's backbone feature caches once its runs are finished (CosmosQA at length 256 on
    # RoBERTa-large: ~10 GB); True keeps them for later runs on the same data.
    keep_feature_cache: bool = True
    device: str = "cpu"
    progress: bool = True

    def epochs_for(self, setting: Setting) -> int:
        return self.epochs if setting.mode == "pooled" or self.trained_epochs is None else self.trained_epochs

    def learning_rates_for(self, setting: Setting) -> list[float]:
        """The learning rates tried (each run picks the best on dev): the grid for the cheap settings."""
        if setting.mode == "pooled" and self.learning_rates:
            return list(self.learning_rates)
        return [self.learning_rate_for(setting)]

    def learning_rate_for(self, setting: Setting) -> float:
        if setting.backbone_trainable:
            return self.backbone_learning_rate
        return self.adapter_learning_rate if setting.adapters_trainable and setting.adapters else self.learning_rate


#: The notebook's parameters for the pipeline's smoke profile (~1-2 min on 2 busy cores) and paper profile.
NOTEBOOK_SMOKE_PARAMETERS = {
    "tasks": ["openentity", "semeval", "cosmosqa"],
    "limits": {"openentity": {"train": 48, "dev": 24, "test": 24}, "semeval": {"train": 48, "dev": 24, "test": 24},
               "cosmosqa": {"train": 16, "dev": 8, "test": 8}},
    "factual_adapter": "{run}/02_adapter_pretraining/factual/adapters/factual",
    "linguistic_adapter": "{run}/02_adapter_pretraining/linguistic/adapters/linguistic",
    "stand_in_adapter": {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128,
                         "num_transformer_layers": 1},
    "seeds": [0, 1], "epochs": 2, "trained_epochs": 1, "learning_rates": None, "max_length": 64, "device": "cpu",
}
NOTEBOOK_PAPER_PARAMETERS = {
    "backbone": "roberta-large",
    "tasks": ["openentity", "fewrel", "cosmosqa"],
    "limits": {},
    "factual_adapter": "{run}/02_adapter_pretraining/factual/adapters/factual",
    "linguistic_adapter": "{run}/02_adapter_pretraining/linguistic/adapters/linguistic",
    "stand_in_adapter": None,
    "seeds": [0, 1, 2], "epochs": 10, "trained_epochs": 3, "max_length": 256, "device": "cuda",
    "trained_backbone_combinations": ["", "F", "F+L"], "backbone_learning_rate": 1e-5,
}
