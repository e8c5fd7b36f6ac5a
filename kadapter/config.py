"""Configuration dataclasses for knowledge adapters, serialised as JSON."""
from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

# The official K-Adapter launchers tap RoBERTa-large (24 layers) at hidden states 0, 11 and 22.
PAPER_TAP_LAYERS = (0, 11, 22)
# The activations an adapter's transformer layers can use (built by kadapter.adapter).
ADAPTER_ACTIVATIONS = ("gelu", "gelu_new", "relu")


def default_tap_layers(num_hidden_layers: int) -> tuple[int, ...]:
    """Where adapters read the backbone, as hidden-state indices (0 = embedding output, i = output of block i).

    The official launchers use (0, 11, 22) for a 24-layer backbone: the embeddings, the block just below the middle
    and the second-to-last block. For another depth L we keep those proportions: ``(0, L // 2 - 1, L - 2)``, so a
    24-layer model gets (0, 11, 22), a 12-layer one (0, 5, 10) and the 6-layer MiniLM (0, 2, 4). Very shallow models
    keep the distinct values only.
    """
    if num_hidden_layers < 1:
        raise ValueError(f"a backbone needs at least one layer, got {num_hidden_layers}")
    taps = (0, max(num_hidden_layers // 2 - 1, 0), max(num_hidden_layers - 2, 0))
    return tuple(sorted(set(taps)))


@dataclass
class AdapterConfig:
    """One knowledge adapter: where it taps the backbone and the size of its layers.

    Defaults are the paper's adapter (hidden 768, N=2 transformer layers per adapter layer, 12 heads, FFN 3072,
    projections initialised with std 0.0002 so every adapter layer starts close to the identity).
    """

    tap_layers: tuple[int, ...] | None = None  # None: default_tap_layers(backbone depth), fixed at construction
    hidden_size: int = 768  # the adapter's own width (projection target)
    num_transformer_layers: int = 2  # N transformer layers inside each adapter layer
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    init_range: float = 0.0002  # std of the down/up projections (near-identity start)
    # None: the transformer layers keep PyTorch's default init, as the official code; a float: BERT's N(0, std)
    transformer_init_range: float | None = None
    # Every `skip_interval` adapter layers, add the output of the adapter layer `skip_interval` steps back
    # (0 = off, the paper's setting).
    skip_interval: int = 0
    # The official code lets adapter tokens attend to padding. Off by default: we use the real attention mask.
    faithful_padding: bool = False
    # Set from the backbone's kind when left None (kadapter.backbone_kind), then saved explicitly:
    # causal=True: position t attends to positions <= t only (over a causal LM, so nothing sees later tokens);
    # tap_norm="rms": each tapped hidden state is divided by its root mean square (no parameters) before the
    # adapter reads it, so a residual stream of norm 1e4-1e5 (Gemma) enters at unit scale; "none": as the paper.
    causal: bool | None = None
    tap_norm: str | None = None

    def __post_init__(self) -> None:
        self._check_types()
        if self.tap_layers is not None:
            self.tap_layers = tuple(int(t) for t in self.tap_layers)
            if not self.tap_layers:
                raise ValueError("tap_layers must name at least one backbone layer")
            if list(self.tap_layers) != sorted(set(self.tap_layers)):
                raise ValueError(f"tap_layers must be strictly increasing, got {self.tap_layers}")
        for name in ("hidden_size", "num_transformer_layers", "num_attention_heads", "intermediate_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"AdapterConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"AdapterConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.hidden_act not in ADAPTER_ACTIVATIONS:
            raise ValueError(f"AdapterConfig.hidden_act {self.hidden_act!r} is not one of {list(ADAPTER_ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}"
            )
        if self.skip_interval < 0:
            raise ValueError(f"skip_interval must be >= 0, got {self.skip_interval}")
        if self.tap_norm not in (None, "none", "rms"):
            raise ValueError(f"tap_norm must be 'none' or 'rms' (or None: the backbone kind's), got {self.tap_norm!r}")

    def _check_types(self) -> None:
        """Every field of the type it is declared with (a JSON edit like ``"causal": "no"`` or ``"heads": 2.5`` would
        otherwise be read as something else, or fail far from here)."""
        def bad(name: str, value, wanted: str) -> TypeError:
            return TypeError(f"AdapterConfig.{name} must be {wanted}, got {value!r} ({type(value).__name__})")

        def is_int(value) -> bool:
            return isinstance(value, numbers.Integral) and not isinstance(value, bool)

        def is_number(value) -> bool:
            return isinstance(value, numbers.Real) and not isinstance(value, bool)

        for name in ("hidden_size", "num_transformer_layers", "num_attention_heads", "intermediate_size",
                     "skip_interval"):
            if not is_int(getattr(self, name)):
                raise bad(name, getattr(self, name), "an integer")
        for name in ("dropout", "attention_dropout", "layer_norm_eps", "init_range"):
            if not is_number(getattr(self, name)):
                raise bad(name, getattr(self, name), "a number")
        if self.transformer_init_range is not None and not is_number(self.transformer_init_range):
            raise bad("transformer_init_range", self.transformer_init_range, "a number or None")
        if not isinstance(self.faithful_padding, bool):
            raise bad("faithful_padding", self.faithful_padding, "true or false")
        if self.causal is not None and not isinstance(self.causal, bool):
            raise bad("causal", self.causal, "true, false or None (the backbone kind's)")
        if not isinstance(self.hidden_act, str):
            raise bad("hidden_act", self.hidden_act, f"one of {list(ADAPTER_ACTIVATIONS)}")
        if self.tap_layers is not None and (isinstance(self.tap_layers, (str, bytes)) or not all(
                is_int(t) for t in self.tap_layers)):
            raise bad("tap_layers", self.tap_layers, "a list of integers or None")

    def resolved(self, num_hidden_layers: int, kind_defaults: dict | None = None) -> "AdapterConfig":
        """This config with its taps fixed and checked against a backbone of `num_hidden_layers` blocks, and the
        fields left None (``causal``, ``tap_norm``) taken from `kind_defaults` (the backbone kind's
        ``adapter_defaults()``; an encoder's when not given)."""
        taps = self.tap_layers if self.tap_layers is not None else default_tap_layers(num_hidden_layers)
        bad = [t for t in taps if not 0 <= t <= num_hidden_layers]
        if bad:
            raise ValueError(
                f"tap layer(s) {bad} out of range: the backbone has {num_hidden_layers} blocks, "
                f"so hidden-state indices run from 0 (embeddings) to {num_hidden_layers}"
            )
        defaults = {"causal": False, "tap_norm": "none", **(kind_defaults or {})}
        unset = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return AdapterConfig(**{**asdict(self), "tap_layers": taps, **unset})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tap_layers"] = list(self.tap_layers) if self.tap_layers is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AdapterConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown AdapterConfig field(s): {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "AdapterConfig":
        return cls.from_dict(json.loads(text))


@dataclass
class BackboneIdentity:
    """What an adapter was trained against; compared when the adapter is plugged into a backbone."""

    name_or_path: str
    model_type: str
    hidden_size: int
    num_hidden_layers: int
    config_fingerprint: str
    weights_fingerprint: str

    # name_or_path is informative only: the same weights may live at another path.
    COMPARED = ("model_type", "hidden_size", "num_hidden_layers", "config_fingerprint", "weights_fingerprint")

    def differences(self, other: "BackboneIdentity") -> list[str]:
        return [
            f"{name}: adapter expects {getattr(self, name)!r}, backbone has {getattr(other, name)!r}"
            for name in self.COMPARED
            if getattr(self, name) != getattr(other, name)
        ]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BackboneIdentity":
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass
class FusionConfig:
    """How adapter outputs are combined with the backbone's last hidden state."""

    mode: str = "concat"  # "concat" (paper) or "add"
    adapter_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in ("concat", "add"):
            raise ValueError(f"fusion mode must be 'concat' or 'add', got {self.mode!r}")


def write_json(path: str | Path, payload: dict) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
