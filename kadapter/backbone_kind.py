"""Backbone kinds: every difference between an encoder backbone and a causal (decoder-only) language model.

K-Adapter was written for encoders (BERT, RoBERTa, MiniLM). A causal LM (Gemma, Llama, GPT-2, ... any
``AutoModelForCausalLM``) differs in a handful of places, and each of them is a field or a method of one kind
object here, never an ``if causal:`` elsewhere:

=================================  ================================  ==============================================
                                   encoder                           causal LM
=================================  ================================  ==============================================
load                               ``AutoModel``                     ``AutoModelForCausalLM`` (the LM head stays
                                                                     reachable for probing: ``model.lm_head``)
hidden states / last hidden state  ``out.hidden_states``,            the base model's output (no vocabulary
                                   ``out.last_hidden_state``         projection); its last hidden state is
                                                                     ``hidden_states[-1]``, after the final norm
position ids                       the model's own                   from the attention mask (left padding safe)
a sequence head pools              the first token (CLS / ``<s>``)   the last *real* token (the only one that has
                                                                     seen the whole sequence), under any padding
padding side                       right                             left (as for generation); features are the
                                                                     same at real tokens under either padding
mask token                         meaningful (masked LM)            meaningless: never used to ask a question
feature-cache dtype                float16 (default), bf16, fp32     bfloat16 (default) or float32; float16 is
                                                                     refused (Gemma's residual stream reaches
                                                                     1e5 and overflows float16 to inf)
adapter attention                  bidirectional                     causal: position t never sees t+1...
tap normalisation                  none (as the paper)               parameter-free RMS norm of each tapped state
relation head markers              the opening ``@`` / ``#``         the closing ``@`` / ``#`` (they have seen
                                                                     the whole entity; an opening one has not)
=================================  ================================  ==============================================

``kind_of(model)`` picks the kind from a model (or config); ``KAdapterModel.kind`` holds it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

ENCODER = "encoder"
CAUSAL_LM = "causal_lm"
KNOWN_STORAGE_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class BackboneKind:
    """What is true of every backbone of one kind. Use the two instances ``ENCODER_KIND`` / ``CAUSAL_LM_KIND``."""

    name: str
    causal: bool  # True: position t's hidden state depends on tokens <= t only
    padding_side: str  # how the tokenizer pads batches
    sequence_pooling: str  # "first" or "last": the token a sequence-level head reads
    mask_token_meaningful: bool  # whether the backbone was trained to fill a mask token
    storage_dtypes: tuple[str, ...]  # feature-cache storage dtypes that cannot overflow on this kind
    default_storage_dtype: str
    adapter_causal: bool  # adapters over this backbone attend causally
    tap_norm: str  # "none" or "rms": how adapters normalise a tapped hidden state before reading it
    relation_markers: str  # "open" or "close": which entity markers the relation head reads

    # ------------------------------------------------------------------------------------------------- loading
    def auto_class(self):
        from transformers import AutoModel, AutoModelForCausalLM

        return AutoModelForCausalLM if self.causal else AutoModel

    def prepare_tokenizer(self, tokenizer):
        """Pad on this kind's side; a causal tokenizer without a pad token pads with its end-of-sequence token
        (padded positions are masked everywhere, so the id does not matter)."""
        if tokenizer is None:
            return None
        tokenizer.padding_side = self.padding_side
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    # ------------------------------------------------------------------------------------------------- forward
    def core(self, model: nn.Module) -> nn.Module:
        """The module that computes hidden states: a causal LM's base model (no vocabulary projection, which on
        Gemma costs as much as its 18 blocks), the encoder itself."""
        return model.base_model if self.causal else model

    def run(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None = None) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """(all hidden states, last hidden state) of one batch. Index 0 is the embedding output, i the output of
        block i; on a causal LM the last one is after the final norm (what its LM head reads)."""
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        if self.causal:
            kwargs["position_ids"] = self.position_ids(attention_mask)
            kwargs["use_cache"] = False
        out = self.core(model)(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                               **kwargs)
        last = getattr(out, "last_hidden_state", None)
        return out.hidden_states, (last if last is not None else out.hidden_states[-1])

    def position_ids(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """0, 1, 2... over the real tokens whatever the padding side (padding gets 0)."""
        return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)

    # ------------------------------------------------------------------------------------------------- pooling
    def pool_index(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch,) the position a sequence head reads: the first position (encoders; the CLS token under right
        padding) or the last real token (causal; correct under left, right or no padding)."""
        if self.sequence_pooling == "first":
            return torch.zeros(attention_mask.shape[0], dtype=torch.long, device=attention_mask.device)
        return last_real_index(attention_mask)

    # ------------------------------------------------------------------------------------------- feature cache
    def check_storage_dtype(self, storage_dtype: str | None) -> str:
        """The storage dtype to use (None: this kind's default); an unsafe one is an error that says why."""
        if storage_dtype is None or storage_dtype == "auto":
            return self.default_storage_dtype
        if storage_dtype not in KNOWN_STORAGE_DTYPES:
            raise ValueError(f"storage_dtype must be one of {sorted(KNOWN_STORAGE_DTYPES)}, got {storage_dtype!r}")
        if storage_dtype not in self.storage_dtypes:
            raise ValueError(
                f"storage_dtype {storage_dtype!r} is unsafe on a {self.name} backbone: its residual stream is "
                f"too large for float16 (Gemma 3's hidden states reach 1e5; float16 overflows to inf above "
                f"65504). Use one of {list(self.storage_dtypes)} (None picks {self.default_storage_dtype!r}).")
        return storage_dtype

    # ----------------------------------------------------------------------------------------------- adapters
    def adapter_defaults(self) -> dict:
        """The AdapterConfig fields an adapter over this kind gets when its config leaves them unset (None)."""
        return {"causal": self.adapter_causal, "tap_norm": self.tap_norm}

    def check_cloze(self, tokenizer) -> None:
        """Refuse to use a mask token on a backbone that was never trained to fill one."""
        if not self.mask_token_meaningful:
            mask = getattr(tokenizer, "mask_token", None)
            raise ValueError(f"a {self.name} backbone predicts the next token; its mask token {mask!r} means "
                             f"nothing to it. Ask for the token after a prefix instead.")


ENCODER_KIND = BackboneKind(
    name=ENCODER, causal=False, padding_side="right", sequence_pooling="first", mask_token_meaningful=True,
    storage_dtypes=("float16", "bfloat16", "float32"), default_storage_dtype="float16", adapter_causal=False,
    tap_norm="none", relation_markers="open")
CAUSAL_LM_KIND = BackboneKind(
    name=CAUSAL_LM, causal=True, padding_side="left", sequence_pooling="last", mask_token_meaningful=False,
    storage_dtypes=("bfloat16", "float32"), default_storage_dtype="bfloat16", adapter_causal=True,
    tap_norm="rms", relation_markers="close")
KINDS = {k.name: k for k in (ENCODER_KIND, CAUSAL_LM_KIND)}


def last_real_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch,) the index of the last 1 in each row of a (batch, seq) mask; an all-padding row is an error."""
    mask = attention_mask.bool()
    if not mask.any(-1).all():
        raise ValueError("a sequence without any real token (its attention mask is all zeros)")
    width = mask.shape[-1]
    return width - 1 - mask.flip(-1).long().argmax(-1)


def _decoder_only_types() -> set[str]:
    """Model types that have a causal-LM class and no masked-LM or encoder-decoder class."""
    from transformers.models.auto import modeling_auto as auto

    causal = set(auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    other = set(auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES) | set(auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)
    return causal - other


def kind_for_model_type(model_type: str, architectures=None) -> BackboneKind:
    """The kind of a config: causal when its architecture is a causal LM (``...ForCausalLM``, ``...LMHeadModel``)
    or its model type only exists as a decoder (Gemma, Llama, GPT-2, Qwen...); an encoder otherwise."""
    archs = list(architectures or [])
    if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs):
        return CAUSAL_LM_KIND
    if any(a.endswith(("ForMaskedLM", "Model", "ForPreTraining")) for a in archs) and \
            model_type not in _decoder_only_types():
        return ENCODER_KIND
    return CAUSAL_LM_KIND if model_type in _decoder_only_types() else ENCODER_KIND


def kind_of(model_or_config, kind: str | BackboneKind | None = None) -> BackboneKind:
    """The kind of a model or config; ``kind`` (a name or a kind) overrides the detection."""
    if isinstance(kind, BackboneKind):
        return kind
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f"unknown backbone kind {kind!r}: one of {sorted(KINDS)}")
        return KINDS[kind]
    config = getattr(model_or_config, "config", model_or_config)
    if isinstance(model_or_config, nn.Module):
        from transformers.models.auto import modeling_auto as auto

        if type(model_or_config).__name__ in set(auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()) and \
                getattr(config, "model_type", None) in _decoder_only_types():
            return CAUSAL_LM_KIND
    return kind_for_model_type(getattr(config, "model_type", ""), getattr(config, "architectures", None))


def kind_of_path(name_or_path: str | Path) -> BackboneKind:
    """The kind of a checkpoint from its config alone (nothing else is loaded)."""
    from transformers import AutoConfig

    return kind_of(AutoConfig.from_pretrained(str(name_or_path)))
