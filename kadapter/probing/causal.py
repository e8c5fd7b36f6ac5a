"""LAMA probing for causal (decoder-only) language models, head for head.

The object is predicted as the next token after ``<bos>`` + the template's prefix: "[X] was born in [Y] ." with
X = "Dante" becomes ``<bos>Dante was born in`` and the gold is the object's leading-space token (" Florence").
Relations whose ``[Y]`` is not the last word of the template (only punctuation may follow) cannot be asked this way;
they are skipped and reported with their fact counts (:func:`prefix_facts`), never dropped silently.

The probe recipe (:class:`CausalLMProbe`), the same for every variant compared: the model's own tied LM head (the
frozen word embeddings, with the model's final-logit soft-capping if it has one) reads a **residual fusion**
``h + Σ g_i·ℓ_i + W·[rms(h); rms(ℓ_1); ...] + b`` of the backbone's final hidden state ``h`` and each frozen
adapter's learned part ``ℓ_i`` at the predicting position (:class:`ResidualFusion`). ``g, W, b`` start at zero, so
every probe starts as the backbone with its own head; only ``g, W, b`` train, with the next-token objective on the
same general English text, the same batches, steps, learning rate and seeds for every variant
(:func:`kadapter.probing.variants.train_variants` drives them side by side). The backbone alone gets the same fusion over ``[rms(h)]`` so it has the same budget. The untouched backbone
with its own head (no fusion at all) is reported as a reference row. The next-token softmax during training runs
over the *training vocabulary* (every token that is a target in the training text, plus the ranking candidates),
the same set for every variant: a full 262k-token softmax costs 10x more per step on CPU and ranks the same
candidates.

The backbone's states are computed once for the facts and once for the training text (:class:`CausalStates`), and
every variant and seed reads them; adapters run over the cached tap states (causal adapters: exact at every real
position under right padding).
"""
from __future__ import annotations

import string
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BackboneIdentity
from ..model import KAdapterModel
from .features import (BACKBONE_SOURCE, LearnedPartGates, MaskedFeatures, ProbeOutput, adapter_identities,
                       load_probe_weights, read_probe_config, save_probe)
from .states import CausalStates, causal_forward
from .vocabulary import CandidateVocabulary, full_vocabulary

SUBJECT_SLOT, OBJECT_SLOT = "[X]", "[Y]"
MASK_PLACEHOLDER = "[MASK]"
_AFTER_OBJECT_OK = set(string.punctuation) | set(string.whitespace)


# =====================================================================================================================
# Prompts: the template's prefix
# =====================================================================================================================
def object_is_last(template: str) -> bool:
    """True when only punctuation and spaces follow ``[Y]`` and something precedes it."""
    if template.count(OBJECT_SLOT) != 1:
        raise ValueError(f"a LAMA template needs exactly one {OBJECT_SLOT}: {template!r}")
    before, after = template.split(OBJECT_SLOT)
    return bool(before.strip()) and all(ch in _AFTER_OBJECT_OK for ch in after)


def template_prefix(template: str, subject: str) -> str:
    """``("[X] was born in [Y] .", "Dante")`` -> ``"Dante was born in"``: the text a causal LM continues with the
    object. Raises ``ValueError`` when ``[Y]`` is not last (see :func:`object_is_last`)."""
    if SUBJECT_SLOT not in template:
        raise ValueError(f"a LAMA template needs {SUBJECT_SLOT}: {template!r}")
    if not object_is_last(template):
        raise ValueError(f"{OBJECT_SLOT} is not the last word of {template!r}: a causal LM cannot be asked it as a "
                         "next-token question")
    return template.split(OBJECT_SLOT)[0].replace(SUBJECT_SLOT, subject).rstrip()


def cloze_prefix(text: str) -> str:
    """A demo cloze ("The capital of France is [MASK].") as the prefix a causal LM continues. The blank must be
    last (only punctuation after it); otherwise ``ValueError`` with a message meant for the user."""
    if text.count(MASK_PLACEHOLDER) != 1:
        raise ValueError(f"a cloze statement needs exactly one {MASK_PLACEHOLDER}: {text!r}")
    before, after = text.split(MASK_PLACEHOLDER)
    if not all(ch in _AFTER_OBJECT_OK for ch in after):
        raise ValueError(f"this is a causal (left-to-right) language model: it can only fill a blank at the end of "
                         f"the sentence, but {MASK_PLACEHOLDER} is followed by {after.strip()!r}. Rephrase so the "
                         f"blank comes last, e.g. \"The capital of France is {MASK_PLACEHOLDER}.\"")
    if not before.strip():
        raise ValueError(f"nothing precedes {MASK_PLACEHOLDER}: a causal language model needs a prefix to continue")
    return before.rstrip()


def prefix_ids(tokenizer, prefix: str) -> list[int]:
    """``<bos>`` (when the tokenizer has one) + the prefix's tokens."""
    ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    return ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + list(ids)


def prefix_facts(facts: Iterable[dict]) -> tuple[list[dict], dict]:
    """The facts a causal LM can be asked, each with its ``prefix``; and a report of the relations skipped because
    their ``[Y]`` is not last: ``{kept, skipped_relations: {relation: {facts, template}}, skipped_facts}``."""
    kept, skipped = [], {}
    for fact in facts:
        if object_is_last(fact["template"]):
            kept.append({**fact, "prefix": template_prefix(fact["template"], fact["sub_label"])})
        else:
            entry = skipped.setdefault(fact["relation"], {"facts": 0, "template": fact["template"]})
            entry["facts"] += 1
    return kept, {"rule": f"the object is the next token after <bos> + the template's prefix; relations whose "
                          f"{OBJECT_SLOT} is not last are skipped", "kept": len(kept),
                  "skipped_relations": dict(sorted(skipped.items())),
                  "skipped_facts": sum(e["facts"] for e in skipped.values())}


# =====================================================================================================================
# The probe: the model's own tied LM head over a residual fusion that starts as the identity
# =====================================================================================================================
def _rms(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class ResidualFusion(nn.Module):
    """``h + Σ_i g_i·ℓ_i + W·[rms(h); rms(ℓ_1); ...] + b``, every parameter zero at start: the identity on ``h``.

    ``ℓ_i`` is adapter i's **learned part** (``Σ up_project(…)``, :meth:`KnowledgeAdapter.learned_part`), not its
    whole output, which mostly re-sums the backbone's own tapped states. Two ways to read it, both trained from zero
    on general text: ``W`` (each source RMS-normalised, parameter-free, so no scale matters) and one gate per adapter
    (:class:`~kadapter.probing.features.LearnedPartGates`) that adds the learned part to ``h`` as it is, so the
    model's own head reads what an adapter wrote into the hidden space.

    ``add=True``: ``h + Σ ℓ_i`` with no parameters — the head the positive control is trained through, so that it
    writes its facts where the gates read them.
    """

    def __init__(self, hidden_size: int, adapter_names: Sequence[str], add: bool = False):
        super().__init__()
        self.adapter_names = list(adapter_names)
        self.add = add
        if not add:
            self.proj = nn.Linear((len(self.adapter_names) + 1) * hidden_size, hidden_size)
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
            self.gates = LearnedPartGates(self.adapter_names)

    def gate_values(self) -> dict[str, float]:
        """Each adapter's gate (1 for the parameter-free ``add`` fusion)."""
        return {n: 1.0 for n in self.adapter_names} if self.add else self.gates.values()

    def forward(self, backbone_last: torch.Tensor, adapter_states: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if set(adapter_states) != set(self.adapter_names):
            raise ValueError(f"fusion expects adapters {self.adapter_names}, got {sorted(adapter_states)}")
        fused = backbone_last.float()
        if self.add:
            return fused + sum((adapter_states[n].float() for n in self.adapter_names), torch.zeros_like(fused))
        parts = [_rms(backbone_last.float())] + [_rms(adapter_states[n].float()) for n in self.adapter_names]
        return self.gates(fused, adapter_states) + self.proj(torch.cat(parts, dim=-1))


class TiedLMHead(nn.Module):
    """The causal LM's own output layer: logits = h · E^T over the (borrowed, frozen) tied word embeddings, then the
    model's final-logit soft-capping if its config has one. No parameters of its own."""

    def __init__(self, word_embeddings: nn.Module, softcap: float | None = None):
        super().__init__()
        object.__setattr__(self, "_word_embeddings", word_embeddings)  # borrowed (Embedding or Linear), not registered
        self.softcap = softcap

    @property
    def vocab_size(self) -> int:
        return self._word_embeddings.weight.shape[0]

    def decoder(self, token_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        embeddings = self._word_embeddings.weight.detach()
        return (embeddings if token_ids is None else embeddings[token_ids]), None

    def forward(self, features: torch.Tensor, token_ids: torch.Tensor | None = None,
                decoder: tuple[torch.Tensor, None] | None = None) -> torch.Tensor:
        embeddings, _ = decoder if decoder is not None else self.decoder(token_ids)
        logits = features @ embeddings.to(features.dtype).T
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def config(self) -> dict:
        return {"vocab_size": self.vocab_size, "softcap": self.softcap, "tied": True}


def tied_lm_head(model: KAdapterModel) -> TiedLMHead:
    """The backbone's own LM head (its output layer, or the input embeddings when tied and not loaded)."""
    config = model.backbone.config
    output = model.backbone.get_output_embeddings()
    if output is None:
        if not getattr(config, "tie_word_embeddings", False):
            raise ValueError(f"{model.identity.name_or_path}: the backbone was loaded without its LM head and the "
                             "head is not tied to the input embeddings; load it as a causal LM")
        output = model.backbone.get_input_embeddings()
    elif getattr(output, "bias", None) is not None:
        raise ValueError(f"{model.identity.name_or_path}: an LM head with a bias is not supported")
    return TiedLMHead(output, getattr(config, "final_logit_softcapping", None))


class CausalLMProbe(nn.Module):
    """Residual fusion (identity at start) + the model's own tied LM head: the causal probe recipe.

    ``loss_token_ids`` (the training vocabulary) restrict the next-token softmax of the training loss; it is not
    saved (a loaded probe ranks, it does not train)."""

    kind = "causal"

    def __init__(self, adapter_names: Sequence[str], fusion: ResidualFusion, head: TiedLMHead,
                 identity: BackboneIdentity, recipe: dict | None = None,
                 loss_token_ids: Sequence[int] | torch.Tensor | None = None):
        super().__init__()
        if list(fusion.adapter_names) != list(adapter_names):
            raise ValueError(f"fusion is built for {fusion.adapter_names}, probe for {list(adapter_names)}")
        self.adapter_names = list(adapter_names)
        self.fusion, self.head, self.identity = fusion, head, identity
        self.recipe = dict(recipe or {})
        ids = torch.as_tensor(sorted(set(int(i) for i in loss_token_ids)) if loss_token_ids is not None else [],
                              dtype=torch.long)
        self.register_buffer("loss_token_ids", ids, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.head._word_embeddings.weight.device

    def inputs(self, sources: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: sources[k].to(self.device) for k in [BACKBONE_SOURCE, *self.adapter_names]}

    def gate_values(self) -> dict[str, float]:
        """Each adapter's learned-part gate (:class:`~kadapter.probing.features.LearnedPartGates`)."""
        return self.fusion.gate_values()

    def forward(self, sources: Mapping[str, torch.Tensor], labels: torch.Tensor | None = None,
                token_ids: torch.Tensor | None = None, decoder: tuple | None = None) -> ProbeOutput:
        """Logits (all tokens, ``token_ids`` only, or a precomputed ``decoder``); with ``labels`` (next-token ids)
        the logits and cross-entropy are over the training vocabulary (``loss_token_ids``)."""
        fused = self.fusion(sources[BACKBONE_SOURCE], {n: sources[n] for n in self.adapter_names})
        if labels is None:
            return ProbeOutput(self.head(fused, token_ids, decoder))
        if token_ids is not None or decoder is not None:
            raise ValueError("the training loss is over the training vocabulary: give labels or token_ids, not both")
        vocab = self.loss_token_ids
        if vocab.numel() == 0:
            vocab = torch.arange(self.head.vocab_size, device=fused.device)
        labels = labels.to(vocab.device)
        target = torch.searchsorted(vocab, labels)
        if bool((target >= len(vocab)).any()) or bool((vocab[target.clamp(max=len(vocab) - 1)] != labels).any()):
            raise ValueError("a training label is not in the probe's training vocabulary (loss_token_ids)")
        logits = self.head(fused, vocab)
        return ProbeOutput(logits, F.cross_entropy(logits, target))

    def topk(self, model: KAdapterModel, text: str, k: int = 10,
             vocabulary: CandidateVocabulary | None = None) -> list[tuple[str, float]]:
        return causal_predict_topk(model, self, text, k, vocabulary)

    def save_pretrained(self, directory: str | Path) -> Path:
        return save_probe(self, directory, {
            "kind": self.kind, "adapter_names": self.adapter_names,
            "fusion": "add" if self.fusion.add else "residual (identity at start)",
            "gates": self.fusion.gate_values(),
            "head": self.head.config(), "recipe": self.recipe, "backbone": self.identity.to_dict()})

    @classmethod
    def from_pretrained(cls, directory: str | Path, model: KAdapterModel) -> "CausalLMProbe":
        directory = Path(directory)
        payload = read_probe_config(directory, model, required=("recipe",))
        fusion = "add" if payload.get("fusion") == "add" else "residual"
        probe = build_causal_probe(model, payload["adapter_names"], recipe=payload["recipe"], fusion=fusion)
        return load_probe_weights(probe, directory)


def build_causal_probe(model: KAdapterModel, adapter_names: Sequence[str] = (), *, seed: int = 0,
                       fusion: str | None = None, recipe: dict | None = None,
                       loss_token_ids: Sequence[int] | torch.Tensor | None = None) -> CausalLMProbe:
    """A fresh causal probe over ``adapter_names`` (empty: the backbone alone). Its fusion starts at zero, so
    ``seed`` only fixes the batch order when trained. ``fusion``: None or "residual" (the probe recipe), "add"
    (``h + Σ`` learned parts, no parameters: the positive control's training head)."""
    if fusion not in (None, "residual", "concat", "add"):
        raise ValueError(f"the causal probe uses the residual fusion (or 'add'), not {fusion!r}")
    unknown = [n for n in adapter_names if n not in model.adapters]
    if unknown:
        raise ValueError(f"model has no adapter(s) {unknown}; it has {model.adapter_names}")
    fusion_module = ResidualFusion(model.hidden_size, adapter_names, add=fusion == "add")
    probe = CausalLMProbe(adapter_names, fusion_module, tied_lm_head(model),
                          model.identity, {"seed": seed, **(recipe or {})}, loss_token_ids)
    probe.adapter_identities = adapter_identities(model, adapter_names)  # saved with it, checked on loading
    return probe.to(next(model.backbone.parameters()).device)


def own_head_probe(model: KAdapterModel) -> CausalLMProbe:
    """The untouched backbone with its own LM head (an untrained causal probe: its fusion is exactly the identity)."""
    return build_causal_probe(model, [], recipe={"recipe": "own LM head, untouched (no training)"})


# =====================================================================================================================
# Features: the backbone's final state and each adapter's learned part at the predicting positions
# =====================================================================================================================
def _taps(model: KAdapterModel, adapter_names: Sequence[str]) -> list[int]:
    return sorted({t for n in adapter_names for t in model.adapters[n].tap_layers})


@torch.no_grad()
def _positions(model: KAdapterModel, states: CausalStates, indices: Sequence[int], adapter_names: Sequence[str],
               last_only: bool) -> dict[str, torch.Tensor]:
    """Sources at every real position but the last (``last_only=False``: next-token training) or at the last."""
    features = states.features(indices)
    lengths = features.attention_mask.sum(-1)
    if last_only:
        rows, cols = torch.arange(len(indices)), lengths - 1
    else:
        rows, cols = torch.nonzero(torch.arange(features.attention_mask.shape[1])[None, :] < (lengths - 1)[:, None],
                                   as_tuple=True)
    device = next(model.backbone.parameters()).device
    out = {BACKBONE_SOURCE: features.last_hidden_state[rows, cols]}
    if adapter_names:
        moved = features.to(device)
        for name in adapter_names:
            adapter = model.adapters[name]
            was_training = adapter.training
            adapter.eval()
            learned = adapter.learned_part(moved.hidden_states, moved.attention_mask)
            out[name] = learned[rows.to(device), cols.to(device)].float().cpu()
            adapter.train(was_training)
    return out


def _gather(model, states, index_batches, adapter_names, last_only) -> dict[str, torch.Tensor]:
    parts: dict[str, list[torch.Tensor]] = {}
    for indices in index_batches:
        for key, value in _positions(model, states, indices, adapter_names, last_only).items():
            parts.setdefault(key, []).append(value)
    return {k: torch.cat(v) for k, v in parts.items()}


def _batches(n: int, size: int) -> list[list[int]]:
    return [list(range(s, min(s + size, n))) for s in range(0, n, size)]


def causal_corpus_features(model: KAdapterModel, texts: Sequence[str], *, max_length: int = 64,
                           adapter_names: Sequence[str] | None = None, states_root: str | Path | None = None,
                           batch_size: int = 32) -> MaskedFeatures:
    """Next-token training data from general text: at every position t of ``<bos>`` + the sentence's tokens (up to
    ``max_length``), the backbone's final state and each adapter's output, labelled with token t+1. ``groups`` are
    sentence indices. The backbone runs once (:class:`CausalStates`, cached under ``states_root``)."""
    names = list(model.adapter_names if adapter_names is None else adapter_names)
    tokenizer = model.tokenizer
    sequences = [prefix_ids(tokenizer, text)[:max_length] for text in texts]
    sequences = [s for s in sequences if len(s) >= 2]
    states = CausalStates.build(model.backbone, sequences, pad_id=tokenizer.pad_token_id, taps=_taps(model, names),
                                root=states_root, batch_size=batch_size, desc="training-text states")
    sources = _gather(model, states, _batches(len(sequences), batch_size), names, last_only=False)
    labels = torch.tensor([t for s in sequences for t in s[1:]], dtype=torch.long)
    groups = torch.tensor([i for i, s in enumerate(sequences) for _ in s[1:]], dtype=torch.long)
    return MaskedFeatures(sources, labels, groups)


def training_vocabulary(data: MaskedFeatures, candidates: CandidateVocabulary | None = None) -> list[int]:
    """The tokens the training softmax runs over: every target of the training text, plus the ranking candidates."""
    return sorted(set(data.labels.tolist()) | set(candidates.token_ids if candidates is not None else []))


@torch.no_grad()
def next_token_accuracy(probe: CausalLMProbe, data: MaskedFeatures, ks: Sequence[int] = (1, 10),
                        batch_size: int = 1024) -> dict[str, float]:
    """Next-token accuracy@k on held-out text, over the probe's training vocabulary."""
    probe.eval()
    vocab = probe.loss_token_ids.cpu()
    hits = {k: 0 for k in ks}
    for start in range(0, len(data), batch_size):
        batch = data.subset(range(start, min(start + batch_size, len(data))))
        logits = probe(probe.inputs(batch.sources), token_ids=vocab.to(probe.device)).logits.cpu()
        top = vocab[logits.topk(max(ks), dim=-1).indices]
        for k in ks:
            hits[k] += int((top[:, :k] == batch.labels[:, None]).any(-1).sum())
    return {f"acc@{k}": hits[k] / len(data) for k in ks} | {"n": float(len(data))}


# =====================================================================================================================
# The LAMA probe
# =====================================================================================================================
def fact_states(model: KAdapterModel, prompts: Sequence[dict], taps: Sequence[int], *,
                states_root: str | Path | None = None, batch_size: int = 64) -> CausalStates:
    """The backbone's states for ``<bos>`` + each prompt's prefix (computed once, then read from ``states_root``)."""
    sequences = [prefix_ids(model.tokenizer, p["prefix"]) for p in prompts]
    return CausalStates.build(model.backbone, sequences, pad_id=model.tokenizer.pad_token_id, taps=taps,
                              root=states_root, batch_size=batch_size, desc="LAMA prefix states")


def fact_features(model: KAdapterModel, states: CausalStates, rows: Sequence[int], gold_ids: Sequence[int],
                  adapter_names: Sequence[str] = (), batch_size: int = 256) -> MaskedFeatures:
    """The sources at the last prefix token of facts ``rows`` of ``states`` (labels: the gold ids)."""
    rows = list(rows)
    sources = _gather(model, states, [rows[s:s + batch_size] for s in range(0, len(rows), batch_size)],
                      list(adapter_names), last_only=True)
    return MaskedFeatures(sources, torch.tensor(list(gold_ids), dtype=torch.long), torch.arange(len(rows)))


def causal_lama_probe(model: KAdapterModel, probes: Mapping[str, CausalLMProbe], facts: Sequence[dict], *,
                      vocabulary: CandidateVocabulary | None = None, batch_size: int = 64,
                      held_out: Mapping | None = None, subsets: Mapping[str, set[str]] | None = None,
                      states_root: str | Path | None = None, typed: bool = True,
                      taps: Sequence[int] | None = None) -> dict:
    """:func:`kadapter.probing.lama_probe` for a causal LM: the same result layout, plus ``prompt`` (the prefix
    rule and the relations skipped because their ``[Y]`` is not last, with fact counts).

    The backbone's states are computed for every askable fact (whatever the vocabulary) and cached under
    ``states_root`` with the taps of every adapter attached to ``model`` (plus ``taps``), so every variant, seed and
    later call (whichever probes it scores) reads the same states.
    """
    from .ranking import score_lama
    from .vocabulary import candidate_vocabulary, select_facts

    tokenizer = model.tokenizer
    vocabulary = vocabulary or candidate_vocabulary(tokenizer)
    prompts, prompt_report = prefix_facts(facts)
    prompts = [{**p, "_row": i} for i, p in enumerate(prompts)]
    kept, selection = select_facts(prompts, tokenizer, vocabulary)
    if not kept:
        raise ValueError(f"no askable fact has a single-token object among the candidates: {selection['skipped']}")
    needed = sorted({n for p in probes.values() for n in p.adapter_names})
    wanted_taps = sorted(set(taps or []) | set(model.tap_layers))  # every attached adapter's: one cache for all
    states = fact_states(model, prompts, wanted_taps, states_root=states_root, batch_size=batch_size)
    features = fact_features(model, states, [f["_row"] for f in kept], [f["gold_id"] for f in kept], needed)
    kept = [{k: v for k, v in f.items() if k != "_row"} for f in kept]
    result = score_lama(probes, kept, features, vocabulary, tokenizer, selection=selection, held_out=held_out,
                        subsets=subsets, typed=typed)
    result["prompt"] = prompt_report
    result["states"] = {"tokens": states.meta["tokens"], "seconds_to_compute": states.seconds,
                        "folder": str(states.directory)}
    return result


# =====================================================================================================================
# Interactive prediction
# =====================================================================================================================
@torch.no_grad()
def causal_predict_topk(model: KAdapterModel, probe: CausalLMProbe, text: str, k: int = 10,
                        vocabulary: CandidateVocabulary | None = None) -> list[tuple[str, float]]:
    """The ``k`` most probable next tokens for a cloze whose ``[MASK]`` is last ("The capital of France is
    [MASK]."), as (token, probability) over ``vocabulary`` (default: every ordinary token)."""
    tokenizer = model.tokenizer
    ids = prefix_ids(tokenizer, cloze_prefix(text))
    names = probe.adapter_names
    final, tapped, mask = causal_forward(model.backbone, [ids], tokenizer.pad_token_id, _taps(model, names))
    sources = {BACKBONE_SOURCE: final[:, -1]}
    device = next(model.backbone.parameters()).device
    for name in names:
        adapter = model.adapters[name]
        was_training = adapter.training
        adapter.eval()
        out = adapter.learned_part({t: h.to(device) for t, h in tapped.items()}, mask.to(device))
        sources[name] = out[:, -1].float().cpu()
        adapter.train(was_training)
    probe.eval()
    candidates = torch.tensor((vocabulary or full_vocabulary(tokenizer)).token_ids)
    logits = probe(probe.inputs(sources), token_ids=candidates.to(probe.device)).logits[0].float().cpu()
    probs = logits.softmax(-1)
    best = probs.topk(min(k, len(candidates)))
    return [(tokenizer.decode([int(candidates[i])]).strip(), float(p)) for p, i in zip(best.values, best.indices)]
