"""LAMA-style knowledge probing with masked-LM probe heads, the same head for every model compared.

The paper probes K-Adapter with a newly trained MLM layer but RoBERTa with its own pre-trained LM head. Here every
model (backbone alone, backbone + adapters, backbone + random "w/o knowledge" adapters) gets the same kind of probe:
a BERT-style masked-LM head whose decoder is tied to the frozen backbone word embeddings, reading the backbone's
state plus each adapter's gated learned part (:data:`GATES`), trained the same way (corpus, masking, steps, batch
size, learning rate, seed) from the same start: the encoder's own MLM head (the checkpoint's where it ships one,
:func:`pretrained_mlm_head`; else one trained on the backbone alone, :meth:`kadapter.probing.recipes.MaskedRecipe.
prepare`). The default MiniLM ships none.

What is cached, and why it is exact. For MLM the backbone has to see the [MASK] tokens, so features are computed on
the *masked* corpus. Masking is fixed by ``masking_seed`` (a property of the corpus, like LAMA's fixed templates),
so the frozen features of the masked corpus are computed once and shared by every probe-head seed and every
adapter combination. The fusion and the head act on each position on its own, so all they need are the frozen
features *at the masked positions*: the backbone's last hidden state and each frozen adapter's learned part there
(:class:`MaskedFeatures`). Training a probe then never runs the backbone or an adapter again. The probe-head seed
sets the batch order (and the head's draw where no own head is given). The LAMA probe works the same way: one backbone and
one adapter forward per fact, shared by every probe evaluated.

Vocabulary, ranking, results and variants are shared with the causal probe (:mod:`kadapter.probing.causal`) and
live in their own modules of this package.
"""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import BackboneFeatures, extract_features
from ..config import BackboneIdentity, FusionConfig
from ..fusion import Fusion
from ..model import KAdapterModel
from .features import (BACKBONE_SOURCE, LearnedPartGates, MaskedFeatures, ProbeOutput, adapter_identities,
                       load_probe_weights, read_probe_config, save_probe)
from .masked_head import MaskedLMProbeHead, pretrained_mlm_head  # noqa: F401 (re-exported)
from .ranking import score_lama
from .vocabulary import CandidateVocabulary, candidate_vocabulary, full_vocabulary, select_facts

try:
    from ..progress import progress_bar
except ImportError:  # until kadapter.progress lands
    from tqdm.auto import tqdm as progress_bar

# The masked recipe's fusion: the head reads h + Σ g·ℓ (one gate per adapter's learned part, no weight matrix). A
# trained fusion matrix over [h ; ℓ] co-adapts with the head on general text and scrambled what the positive control
# holds: MiniLM, 75 facts, control read at P@1 0.76 through the head it was trained with -> 0.000 through a probe with
# the concat fusion (0.027 with the causal recipe's zero-started residual matrix), 0.133 with gates alone (issue 17)
GATES = "gates"
MASK_PLACEHOLDER = "[MASK]"  # the mask in templates and demo prompts; replaced by the tokenizer's own mask token


# =====================================================================================================================
# Cloze encoding
# =====================================================================================================================
def special_token_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after one sequence ([CLS] .. [SEP], <s> .. </s>)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return full[:start], full[start + len(bare):]
    raise ValueError(f"cannot find the special-token frame of {type(tokenizer).__name__}")


def encode_cloze(tokenizer, text: str) -> tuple[list[int], int]:
    """Token ids of a cloze statement with exactly one mask (``[MASK]`` or the tokenizer's mask token), and the
    mask's position.

    The text is tokenized on both sides of the mask separately, so the mask replaces the object word *with* its
    leading space: a byte-level BPE predicts the ``Ġ`` form there, as RoBERTa's ``<mask>`` (lstrip) does.
    """
    if tokenizer.mask_token and tokenizer.mask_token != MASK_PLACEHOLDER:
        text = text.replace(tokenizer.mask_token, MASK_PLACEHOLDER)
    if text.count(MASK_PLACEHOLDER) != 1:
        raise ValueError(f"a cloze statement needs exactly one {MASK_PLACEHOLDER}: {text!r}")
    left, right = text.split(MASK_PLACEHOLDER)

    def ids(part: str) -> list[int]:
        return tokenizer(part, add_special_tokens=False)["input_ids"] if part.strip() else []

    prefix, suffix = special_token_frame(tokenizer)
    left_ids = prefix + ids(left.rstrip())
    return left_ids + [tokenizer.mask_token_id] + ids(right) + suffix, len(left_ids)


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask



@torch.no_grad()
def position_features(model: KAdapterModel, features: BackboneFeatures, rows: torch.Tensor, cols: torch.Tensor,
                      adapter_names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The backbone's last hidden state and each adapter's **learned part** ``Σ up_project(…)`` at (rows, cols),
    from backbone features (live or from the feature cache). Adapters run frozen (eval mode: no dropout).

    The learned part, not the adapter's whole output: the output re-sums the backbone's own tapped states (most of
    its norm), which the probe already has in ``h``; beside them the identity-initialised fusion, trained on general
    text, never learned to read what the adapter computes (a positive control that holds its facts ranked every
    fact exactly as the backbone, issue 17). For an untrained adapter the learned part is ~0."""
    device = next(model.backbone.parameters()).device
    features = features.to(device)
    out = {BACKBONE_SOURCE: features.last_hidden_state[rows, cols].float().cpu()}
    for name in adapter_names:
        adapter = model.adapters[name]
        was_training = adapter.training
        adapter.eval()
        out[name] = adapter.learned_part(features.hidden_states, features.attention_mask)[rows, cols].float().cpu()
        adapter.train(was_training)
    return out


def _taps(model: KAdapterModel, adapter_names: Sequence[str]) -> list[int]:
    return sorted({t for n in adapter_names for t in model.adapters[n].tap_layers})


@torch.no_grad()
def masked_position_features(model: KAdapterModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                             rows: torch.Tensor, cols: torch.Tensor,
                             adapter_names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """One live frozen forward pass; the backbone's last hidden state and each adapter's learned part at
    (rows, cols)."""
    names = list(model.adapter_names if adapter_names is None else adapter_names)
    device = next(model.backbone.parameters()).device
    feats = extract_features(model.backbone, input_ids.to(device), attention_mask.to(device),
                             layers=_taps(model, names))
    return position_features(model, feats, rows, cols, names)


def _collect(model: KAdapterModel, sequences: Sequence[Sequence[int]], label_rows: Sequence[Sequence[int]],
             adapter_names: Sequence[str] | None, batch_size: int, desc: str,
             cache_root: str | Path | None = None, max_length: int = 512) -> MaskedFeatures:
    """Features at every labelled position (label != -100) of ``sequences``; row order follows the sequences.

    With ``cache_root`` the backbone states come from :class:`kadapter.cache.FeatureCache` (computed once for these
    exact token ids and kept on disk, float32), else from a live backbone pass.
    """
    names = list(model.adapter_names if adapter_names is None else adapter_names)
    cache = None
    if cache_root is not None:
        from datasets import Dataset

        from ..cache import FeatureCache

        encoded = Dataset.from_dict({"input_ids": [list(s) for s in sequences],
                                     "attention_mask": [[1] * len(s) for s in sequences]})
        cache = FeatureCache.build(model, encoded, tokenizer=model.tokenizer, max_length=max_length,
                                   taps=_taps(model, names) or [0], root=cache_root, storage_dtype="float32",
                                   progress=False)
    pad_id = model.tokenizer.pad_token_id
    sources: dict[str, list[torch.Tensor]] = {}
    labels, groups = [], []
    for start in progress_bar(range(0, len(sequences), batch_size), desc=desc, leave=False):
        index = list(range(start, min(start + batch_size, len(sequences))))
        ids, mask = pad_batch([sequences[i] for i in index], pad_id)
        lab, _ = pad_batch([label_rows[i] for i in index], -100)
        rows, cols = torch.nonzero(lab != -100, as_tuple=True)
        if rows.numel() == 0:
            continue
        if cache is not None:
            found = position_features(model, cache.features(index, pad_to=ids.shape[1]), rows, cols, names)
        else:
            found = masked_position_features(model, ids, mask, rows, cols, names)
        for key, value in found.items():
            sources.setdefault(key, []).append(value)
        labels.append(lab[rows, cols])
        groups.append(torch.tensor(index)[rows])
    if not labels:
        raise ValueError("no masked position to collect features from")
    return MaskedFeatures({k: torch.cat(v) for k, v in sources.items()}, torch.cat(labels), torch.cat(groups))



def mask_tokens(ids: Sequence[int], tokenizer, generator: random.Random, mask_prob: float = 0.15) -> tuple[list[int], list[int]]:
    """BERT masking of one tokenized sentence: each ordinary token is chosen with ``mask_prob``; a chosen token
    becomes the mask (80%), a random ordinary token (10%) or stays (10%). Returns (input ids, labels with -100 at
    positions not chosen)."""
    special = set(tokenizer.all_special_ids)
    inputs, labels = list(ids), [-100] * len(ids)
    for i, token in enumerate(ids):
        if token in special or generator.random() >= mask_prob:
            continue
        labels[i] = token
        roll = generator.random()
        if roll < 0.8:
            inputs[i] = tokenizer.mask_token_id
        elif roll < 0.9:
            replacement = generator.randrange(len(tokenizer))
            while replacement in special:
                replacement = generator.randrange(len(tokenizer))
            inputs[i] = replacement
    return inputs, labels


def masked_corpus_features(model: KAdapterModel, texts: Sequence[str], *, mask_prob: float = 0.15,
                           masking_seed: int = 0, max_length: int = 64, batch_size: int = 32,
                           adapter_names: Sequence[str] | None = None,
                           cache_root: str | Path | None = None) -> MaskedFeatures:
    """Mask ``texts`` once (BERT 80/10/10, fixed by ``masking_seed``) and keep the frozen features at the masked
    positions, for the backbone and each adapter in ``adapter_names`` (default: all of the model's). ``groups``
    are sentence indices. With ``cache_root`` the backbone pass goes through the feature cache."""
    tokenizer = model.tokenizer
    generator = random.Random(masking_seed)
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    masked = [mask_tokens(ids, tokenizer, generator, mask_prob) for ids in encoded]
    return _collect(model, [m[0] for m in masked], [m[1] for m in masked], adapter_names, batch_size,
                    "masked corpus features", cache_root, max_length)


# =====================================================================================================================
# Probe heads
# =====================================================================================================================
class MaskedLMProbe(nn.Module):
    """Fusion of frozen features (identity for the backbone alone) + masked-LM head: the encoders' probe."""

    kind = "masked"

    def __init__(self, adapter_names: Sequence[str], fusion: Fusion | None, head: MaskedLMProbeHead,
                 identity: BackboneIdentity, recipe: dict | None = None):
        super().__init__()
        if fusion is not None and list(fusion.config.adapter_names) != list(adapter_names):
            raise ValueError(f"fusion is built for {fusion.config.adapter_names}, probe for {list(adapter_names)}")
        self.adapter_names = list(adapter_names)
        self.fusion, self.head, self.identity = fusion, head, identity
        self.fusion_mode = GATES if fusion is None else fusion.config.mode
        self.recipe = dict(recipe or {})
        # a trained probe reads each adapter's learned part through one gate (LearnedPartGates; zero at start), and a
        # concat fusion also through its weights; the parameter-free add fusion (the positive control's head) has none
        self.gates = LearnedPartGates(adapter_names) if self.fusion_mode != "add" else None

    @property
    def device(self) -> torch.device:
        return self.head.bias.device

    def gate_values(self) -> dict[str, float]:
        return self.gates.values() if self.gates is not None else {n: 1.0 for n in self.adapter_names}

    def inputs(self, sources: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The feature sources this probe reads, on its device."""
        return {k: sources[k].to(self.device) for k in [BACKBONE_SOURCE, *self.adapter_names]}

    def forward(self, sources: Mapping[str, torch.Tensor], labels: torch.Tensor | None = None,
                token_ids: torch.Tensor | None = None,
                decoder: tuple[torch.Tensor, torch.Tensor] | None = None) -> ProbeOutput:
        """Vocabulary logits from features at some positions (``sources[BACKBONE_SOURCE]`` and each adapter's
        output there), or logits of ``token_ids`` only (``decoder``: ``head.decoder(token_ids)``, precomputed);
        with ``labels`` (gold token ids, full vocabulary) also the masked-LM cross-entropy."""
        adapter_states = {n: sources[n] for n in self.adapter_names}
        fused = (sources[BACKBONE_SOURCE] if self.fusion is None
                 else self.fusion(sources[BACKBONE_SOURCE], adapter_states))
        if self.gates is not None:
            fused = self.gates(fused, adapter_states)
        logits = self.head(fused, token_ids, decoder)
        loss = None
        if labels is not None:
            if token_ids is not None or decoder is not None:
                raise ValueError("the masked-LM loss is over the full vocabulary: give labels or token_ids, not both")
            loss = F.cross_entropy(logits, labels)
        return ProbeOutput(logits, loss)

    def topk(self, model: KAdapterModel, text: str, k: int = 10,
             vocabulary: CandidateVocabulary | None = None) -> list[tuple[str, float]]:
        """:func:`predict_topk` with this probe (the causal probe answers the same call its own way)."""
        return predict_topk(model, self, text, k, vocabulary)

    def save_pretrained(self, directory: str | Path) -> Path:
        """probe_config.json (adapters read, fusion mode, head shape, recipe, backbone) + probe.safetensors."""
        return save_probe(self, directory, {
            "adapter_names": self.adapter_names, "fusion": self.fusion_mode, "head": self.head.config(),
            "gates": self.gate_values(),
            "recipe": self.recipe, "backbone": self.identity.to_dict()})

    @classmethod
    def from_pretrained(cls, directory: str | Path, model: KAdapterModel) -> "MaskedLMProbe":
        """Load a saved probe over ``model``, which must have the same backbone and the adapters the probe reads."""
        directory = Path(directory)
        payload = read_probe_config(directory, model, required=("fusion", "head"))
        probe = build_probe(model, payload["adapter_names"], fusion=payload["fusion"], recipe=payload["recipe"],
                            hidden_act=payload["head"]["hidden_act"], layer_norm_eps=payload["head"]["layer_norm_eps"])
        return load_probe_weights(probe, directory)


def build_probe(model: KAdapterModel, adapter_names: Sequence[str] = (), *, seed: int = 0, fusion: str | None = None,
                recipe: dict | None = None, hidden_act: str = "gelu", layer_norm_eps: float | None = None,
                head: MaskedLMProbeHead | None = None) -> MaskedLMProbe:
    """A fresh probe over ``adapter_names`` of ``model`` (empty: the backbone alone); ``seed`` fixes its init.

    ``fusion``: ``"gates"`` (None: the masked recipe's, :data:`GATES`): the head reads ``h + Σ g·ℓ``, one gate per
    adapter's learned part and no weight matrix; ``"concat"``: also the paper's fusion of ``[h ; ℓ]`` (identity
    at start); ``"add"``: ``h + Σ ℓ``, no parameters (the positive control's training head).
    Every variant starts as the backbone's probe: the head is drawn first from ``seed`` (the same draw whatever
    adapters the probe reads), gates start at zero and a ``concat`` fusion starts as the identity on the backbone
    (:meth:`kadapter.fusion.Fusion.init_identity`), so at step 0 the probes of all variants with one seed give
    identical outputs, as the causal recipe's zero-initialised residual fusion does; training moves them apart.
    """
    unknown = [n for n in adapter_names if n not in model.adapters]
    if unknown:
        raise ValueError(f"model has no adapter(s) {unknown}; it has {model.adapter_names}")
    fusion = fusion or GATES
    if fusion not in (GATES, "concat", "add"):
        raise ValueError(f"masked probe fusion must be {GATES!r}, 'concat' or 'add', got {fusion!r}")
    if layer_norm_eps is None:
        layer_norm_eps = getattr(model.backbone.config, "layer_norm_eps", 1e-12)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if head is None:
            head = MaskedLMProbeHead(model.hidden_size, model.backbone.get_input_embeddings(), hidden_act,
                                     layer_norm_eps)
        fusion_module = (None if fusion == GATES
                         else Fusion(FusionConfig(fusion, list(adapter_names)), model.hidden_size).init_identity())
    probe = MaskedLMProbe(adapter_names, fusion_module, head, model.identity, {"seed": seed, **(recipe or {})})
    probe.adapter_identities = adapter_identities(model, adapter_names)  # saved with it, checked on loading
    return probe.to(next(model.backbone.parameters()).device)



@torch.no_grad()
def masked_token_accuracy(probe: MaskedLMProbe, data: MaskedFeatures, ks: Sequence[int] = (1, 10),
                          batch_size: int = 512) -> dict[str, float]:
    """Accuracy@k of the probe on held-out masked tokens, over the full vocabulary."""
    probe.eval()
    hits = {k: 0 for k in ks}
    for start in range(0, len(data), batch_size):
        batch = data.subset(range(start, min(start + batch_size, len(data))))
        top = probe(probe.inputs(batch.sources)).logits.topk(max(ks), dim=-1).indices.cpu()
        for k in ks:
            hits[k] += int((top[:, :k] == batch.labels[:, None]).any(-1).sum())
    return {f"acc@{k}": hits[k] / len(data) for k in ks} | {"n": float(len(data))}


# =====================================================================================================================
# The LAMA probe
# =====================================================================================================================
def lama_features(model: KAdapterModel, facts: Sequence[dict], adapter_names: Sequence[str] | None = None,
                  batch_size: int = 64, cache_root: str | Path | None = None) -> MaskedFeatures:
    """Frozen features at the mask of each fact's filled template; rows follow ``facts`` (labels = gold ids)."""
    from data_prep.lama import fill_template

    sequences, label_rows = [], []
    for fact in facts:
        ids, position = encode_cloze(model.tokenizer, fill_template(fact["template"], fact["sub_label"]))
        labels = [-100] * len(ids)
        labels[position] = fact["gold_id"]
        sequences.append(ids)
        label_rows.append(labels)
    features = _collect(model, sequences, label_rows, adapter_names, batch_size, "LAMA features", cache_root)
    if len(features) != len(facts):
        raise RuntimeError(f"{len(facts)} facts but {len(features)} masked positions")
    return features



def lama_probe(model: KAdapterModel, probes: Mapping[str, MaskedLMProbe], facts: Sequence[dict], *,
               vocabulary: CandidateVocabulary | None = None, batch_size: int = 64,
               held_out: Mapping | None = None, subsets: Mapping[str, set[str]] | None = None,
               cache_root: str | Path | None = None, typed: bool = True) -> dict:
    """Probe every model in ``probes`` on the same LAMA facts; returns a JSON-ready dict.

    ``facts`` are data_prep LAMA facts (template, sub_label, obj_label, relation, uuid). Facts whose object is not a
    single candidate token are dropped and counted. One frozen forward per fact is shared by all probes.
    ``vocabulary`` defaults to LAMA's common vocabulary ∩ the model's. ``held_out`` describes which facts were kept out
    of adapter training (copied into the result). ``subsets`` (name -> uuids, e.g. LAMA-UHN) are scored from the same
    predictions. Result: ``{vocabulary, facts, held_out, models: {name: {per_relation, macro}}, majority: {...},
    subsets: {name: {models, majority, facts}}, predictions: [per fact: uuid, relation, sub, obj, rank and top-1
    per model]}``.
    """
    tokenizer = model.tokenizer
    vocabulary = vocabulary or candidate_vocabulary(tokenizer)
    kept, selection = select_facts(facts, tokenizer, vocabulary)
    if not kept:
        raise ValueError(f"no fact has a single-token object among the candidates: {selection['skipped']}")
    needed = sorted({n for p in probes.values() for n in p.adapter_names})
    features = lama_features(model, kept, needed, batch_size, cache_root)
    return score_lama(probes, kept, features, vocabulary, tokenizer, selection=selection, held_out=held_out,
                      subsets=subsets, typed=typed)


# =====================================================================================================================
# Interactive prediction (used by the widget demo and the notebooks alike)
# =====================================================================================================================
@torch.no_grad()
def predict_topk(model: KAdapterModel, probe: MaskedLMProbe, text: str, k: int = 10,
                 vocabulary: CandidateVocabulary | None = None) -> list[tuple[str, float]]:
    """The ``k`` most probable fillers of the one ``[MASK]`` in ``text``, as (token, probability).

    Probabilities are a softmax over ``vocabulary`` (default: the full vocabulary); tokens are shown decoded
    (a byte-level BPE's ``Ġ`` becomes the space it stands for, then stripped).
    """
    tokenizer = model.tokenizer
    ids, position = encode_cloze(tokenizer, text)
    input_ids, mask = pad_batch([ids], tokenizer.pad_token_id)
    sources = masked_position_features(model, input_ids, mask, torch.tensor([0]), torch.tensor([position]),
                                       probe.adapter_names)
    probe.eval()
    logits = probe(probe.inputs(sources)).logits[0].float().cpu()
    candidates = torch.tensor((vocabulary or full_vocabulary(tokenizer)).token_ids)
    probs = logits[candidates].softmax(-1)
    best = probs.topk(min(k, len(candidates)))
    return [(tokenizer.decode([int(candidates[i])]).strip(), float(p)) for p, i in zip(best.values, best.indices)]


def compare_topk(model: KAdapterModel, probes: Mapping[str, nn.Module], text: str,
                 names: Sequence[str] | None = None, k: int = 10,
                 vocabulary: CandidateVocabulary | None = None) -> dict[str, list[tuple[str, float]]]:
    """Each probe's top-k for the same cloze statement (default: all probes): ``probe.topk`` is
    :func:`predict_topk` for a masked-LM probe and :func:`kadapter.probing.causal.causal_predict_topk` for a causal
    one (which needs the blank at the end, and says so otherwise). A probe whose scores are not finite (NaN
    weights, e.g. from a diverged training run) is an error naming it: NaN has no ranking."""
    results = {name: probes[name].topk(model, text, k, vocabulary) for name in (names or list(probes))}
    for name, ranked in results.items():
        broken = [token for token, p in ranked if not math.isfinite(p)]
        if broken:
            raise ValueError(f"probe {name!r} gives non-finite probabilities (first: {broken[0]!r}): its weights, "
                             "or those of an adapter it reads, are not finite — retrain it")
    return results
