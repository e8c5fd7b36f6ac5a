"""The probe recipe for a model's kind, behind one interface, so notebook 04 reads the same for MiniLM and Gemma.

- :class:`MaskedRecipe` (encoders): a BERT-style masked-LM head tied to the frozen embeddings, over the concat
  fusion, trained with masked-LM cross-entropy on the masked general corpus; the reference row is the checkpoint's
  own MLM head where it has one.
- :class:`CausalRecipe` (causal LMs): the model's own tied LM head over a residual fusion that starts as the
  identity, trained with the next-token objective on the same general corpus; the reference row is the untouched
  backbone with its own head; LAMA asks the next token after the template's prefix.

:func:`probe_recipe` picks one from the model. It is the only place the probing code asks which kind a backbone is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from ..model import KAdapterModel
from . import causal, masked, positive_control_data
from .features import MaskedFeatures
from .vocabulary import CandidateVocabulary


def is_causal_lm(model: KAdapterModel) -> bool:
    """True for a decoder-only LM backbone (:mod:`kadapter.backbone_kind` decides)."""
    return bool(model.kind.causal)


class MaskedRecipe:
    kind = "masked"
    reference_name = "backbone (own MLM head)"
    description = ("masked-LM probe head (dense -> GELU -> LayerNorm -> decoder tied to the frozen embeddings) over "
                   "the concat fusion, trained with masked-LM cross-entropy on the masked general corpus")

    def corpus_features(self, model: KAdapterModel, texts: Sequence[str], *, max_length: int = 64,
                        mask_prob: float = 0.15, masking_seed: int = 0, cache_root: str | Path | None = None,
                        candidates: CandidateVocabulary | None = None) -> MaskedFeatures:
        return masked.masked_corpus_features(model, texts, mask_prob=mask_prob, masking_seed=masking_seed,
                                             max_length=max_length, cache_root=cache_root)

    def builder(self, data: MaskedFeatures | None = None, candidates: CandidateVocabulary | None = None):
        return masked.build_probe

    evaluate = staticmethod(masked.masked_token_accuracy)

    def reference_probe(self, model: KAdapterModel):
        """The checkpoint's own MLM head as a probe; ``ValueError`` when it has none (MiniLM)."""
        head = masked.pretrained_mlm_head(model, model.identity.name_or_path)
        return masked.build_probe(model, [], head=head, recipe={"recipe": "pretrained"})

    def lama_probe(self, model: KAdapterModel, probes: Mapping, facts: Sequence[dict], *, cache_root=None, **kw):
        return masked.lama_probe(model, probes, facts, cache_root=cache_root, **kw)

    # the positive control (kadapter.probing.positive_control): the backbone's own objective, masked LM
    objective_description = ("masked LM: the object of each fact statement masked (and 15% of the general "
                             "sentences' tokens, BERT 80/10/10), a BERT-style MLM head tied to the frozen embeddings "
                             "reading h + the adapter's learned part (add fusion)")

    def statement_facts(self, model: KAdapterModel, facts: Sequence[dict], candidates: CandidateVocabulary):
        from .vocabulary import select_facts

        return select_facts(facts, model.tokenizer, candidates)

    def statement_set(self, model: KAdapterModel, facts: Sequence[dict], texts: Sequence[str], **kw):
        return positive_control_data.masked_statement_set(model, facts, texts, **kw)

    def objective_head(self, model: KAdapterModel, names: Sequence[str], labels, candidates, *, seed: int = 0):
        # h + the learned part, no trainable fusion in between: the adapter has to write its facts where the head
        # reads h, not into a fusion that is thrown away with the head (trained through an identity concat fusion,
        # the control's facts stayed in that fusion and the probe ranked every fact as the backbone: issue 17)
        return masked.build_probe(model, names, seed=seed, fusion="add")

    def prompt_features(self, model: KAdapterModel, facts: Sequence[dict], candidates: CandidateVocabulary, *,
                        taps: Sequence[int], cache_root=None):
        return positive_control_data.masked_prompt_features(model, facts, candidates, taps=taps)


class CausalRecipe:
    kind = "causal"
    reference_name = "backbone (own LM head, untouched)"
    description = ("the model's own tied LM head over a residual fusion h + Σ g·ℓ + W[rms(h); rms(ℓ)] of each "
                   "adapter's learned part ℓ (a gate g per adapter) that starts as the identity (g, W = 0), trained "
                   "with the next-token objective on the general corpus (softmax over the training vocabulary: every "
                   "target token + the ranking candidates), same steps, batches and seeds for every variant")

    def corpus_features(self, model: KAdapterModel, texts: Sequence[str], *, max_length: int = 64,
                        cache_root: str | Path | None = None, **_) -> MaskedFeatures:
        return causal.causal_corpus_features(model, texts, max_length=max_length, states_root=cache_root)

    def builder(self, data: MaskedFeatures, candidates: CandidateVocabulary | None = None):
        vocab = causal.training_vocabulary(data, candidates)

        def build(model, names, **kw):
            return causal.build_causal_probe(model, names, loss_token_ids=vocab, **kw)

        return build

    evaluate = staticmethod(causal.next_token_accuracy)

    def reference_probe(self, model: KAdapterModel):
        return causal.own_head_probe(model)

    def lama_probe(self, model: KAdapterModel, probes: Mapping, facts: Sequence[dict], *, cache_root=None, **kw):
        return causal.causal_lama_probe(model, probes, facts, states_root=cache_root, **kw)

    # the positive control (kadapter.probing.positive_control): the backbone's own objective, the next token
    objective_description = ("next token: the object after <bos> + each fact's prefix (only that position of a "
                             "statement is labelled), and every position of the general sentences, through the "
                             "model's own tied LM head reading h + the adapter's learned part (add fusion; softmax "
                             "over the training targets)")

    def statement_facts(self, model: KAdapterModel, facts: Sequence[dict], candidates: CandidateVocabulary):
        from .vocabulary import select_facts

        prompts, prompt_report = causal.prefix_facts(facts)
        kept, selection = select_facts(prompts, model.tokenizer, candidates)
        return kept, {**selection, "prompt": prompt_report}

    def statement_set(self, model: KAdapterModel, facts: Sequence[dict], texts: Sequence[str], **kw):
        return positive_control_data.causal_statement_set(model, facts, texts, **kw)

    def objective_head(self, model: KAdapterModel, names: Sequence[str], labels, candidates, *, seed: int = 0):
        # the softmax over the training targets only (the objects are among them): on Gemma the ~20k ranking
        # candidates would make every step ~5x dearer, and the control only has to prefer its objects. h + the
        # learned part, no trainable fusion: through the residual fusion (thrown away with this head) the control's
        # facts stayed in that fusion's W and a fresh probe read the control as the backbone (issue 17)
        return causal.build_causal_probe(model, names, seed=seed, fusion="add", loss_token_ids=sorted(set(labels)))

    def prompt_features(self, model: KAdapterModel, facts: Sequence[dict], candidates: CandidateVocabulary, *,
                        taps: Sequence[int], cache_root=None):
        return positive_control_data.causal_prompt_features(model, facts, candidates, taps=taps,
                                                            cache_root=cache_root)


def probe_recipe(model: KAdapterModel) -> MaskedRecipe | CausalRecipe:
    """The probe recipe for ``model``'s kind of backbone."""
    return CausalRecipe() if is_causal_lm(model) else MaskedRecipe()
