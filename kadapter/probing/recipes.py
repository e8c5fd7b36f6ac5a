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
    """The encoders' probe recipe. :meth:`prepare` gives it the encoder's own MLM head (the checkpoint's, or one
    trained on the backbone alone when it ships none); every probe then starts from that head, as a causal LM's probe
    starts from its own LM head, and the positive control is trained through it."""

    kind = "masked"
    reference_name = "backbone (own MLM head)"
    description = ("masked-LM probe head (dense -> GELU -> LayerNorm -> decoder tied to the frozen embeddings), started "
                   "from the encoder's own MLM head (the checkpoint's, or one trained once on the backbone alone), "
                   "reading h + Σ g·ℓ (one gate per adapter's learned part ℓ, zero at start), trained with "
                   "masked-LM cross-entropy on the masked general corpus")

    def __init__(self):
        self.head = None  # the encoder's own MLM head, once prepared
        self.head_source = None

    def corpus_features(self, model: KAdapterModel, texts: Sequence[str], *, max_length: int = 64,
                        mask_prob: float = 0.15, masking_seed: int = 0, cache_root: str | Path | None = None,
                        candidates: CandidateVocabulary | None = None) -> MaskedFeatures:
        return masked.masked_corpus_features(model, texts, mask_prob=mask_prob, masking_seed=masking_seed,
                                             max_length=max_length, cache_root=cache_root)

    def builder(self, data: MaskedFeatures | None = None, candidates: CandidateVocabulary | None = None):
        def build(model, names, **kw):
            # every variant starts from the own head once prepared (a fresh draw per seed before); fusion None: gates
            if self.head is not None:
                kw.setdefault("head", self.head.clone())
            return masked.build_probe(model, names, **kw)

        return build

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

    def objective_head(self, model: KAdapterModel, names: Sequence[str], labels, candidates, *, seed: int = 0,
                       texts: Sequence[str] = (), head_training: Mapping | None = None, output_dir=None,
                       cache_root=None):
        """The encoder's own MLM head (:meth:`prepare`d here if it was not), frozen, reading ``h + ℓ`` (add fusion,
        no trainable fusion in between): the adapter has to write its facts where the probes' head reads h. Trained
        jointly with a fresh head, the control held every fact through that head and a probe trained on general
        text read none (MiniLM, gate 0.01); through an identity concat fusion thrown away with its head likewise
        (issue 17)."""
        if self.head is None:
            self.prepare(model, texts, seed=seed, output_dir=output_dir, cache_root=cache_root,
                         **dict(head_training or {}))
        head = self.head.clone()
        head.requires_grad_(False)
        probe = masked.build_probe(model, names, seed=seed, fusion="add", head=head)
        probe.recipe["head"] = self.head_source
        return probe

    def prepare(self, model: KAdapterModel, texts: Sequence[str], **options) -> str:
        """Give the recipe the encoder's own MLM head: the checkpoint's pre-trained one where it ships one, else
        :meth:`own_head` (``options``). Every probe built afterwards starts from it: without it, a probe head drawn
        afresh and trained on general text read a positive control that held 76% of its facts through the backbone
        probe's head as 0 of 75 (MiniLM; started from that head: 0.60 and 0.48 over two seeds, issue 17). Returns
        where the head comes from."""
        try:
            if not model.identity.name_or_path:  # built from a config in memory: no checkpoint, no head shipped
                raise ValueError("no checkpoint")
            self.head = masked.pretrained_mlm_head(model, model.identity.name_or_path)
            self.head_source = "the checkpoint's pre-trained MLM head"
        except ValueError:  # no MLM head shipped (MiniLM): the one the probe recipe gives the backbone
            self.head, self.head_source = self.own_head(model, texts, **options)
        return self.head_source

    def own_head(self, model: KAdapterModel, texts: Sequence[str], *, seed: int = 0, output_dir=None,
                 cache_root=None, learning_rates: Sequence[float] = (1e-3, 3e-3), max_epochs: int = 3,
                 epochs: int | None = None, learning_rate: float | None = None, batch_size: int = 128,
                 dev_fraction: float = 0.1, mask_prob: float = 0.15, masking_seed: int = 0, max_length: int = 64):
        """An MLM head for an encoder that ships none, trained on the backbone alone (frozen) as notebook 04 trains a
        probe (the same sentences, masking and dev split; a budget search on dev over ``learning_rates`` ×
        ``max_epochs``; ``seed``): its stand-in for a causal LM's own head. ``epochs`` and ``learning_rate`` given:
        that budget instead of the search. Returns (head, description)."""
        import tempfile

        from ..training import TrainConfig
        from .budget import apply_budget, choose_probe_budget
        from .variants import train_probes

        if not texts:
            raise ValueError("training the encoder's own MLM head needs general sentences (texts)")
        data = masked.masked_corpus_features(model, texts, mask_prob=mask_prob, masking_seed=masking_seed,
                                             max_length=max_length, adapter_names=[], cache_root=cache_root)
        train, dev = data.split_by_group(dev_fraction, seed=masking_seed)
        root = Path(output_dir) if output_dir is not None else Path(tempfile.mkdtemp(prefix="kadapter-own-head-"))
        config = TrainConfig(output_dir=str(root), epochs=epochs or max_epochs, batch_size=batch_size,
                             learning_rate=learning_rate or learning_rates[0], warmup_ratio=0.06, seed=seed,
                             progress=False, resume=False)
        build = MaskedRecipe().builder()  # fresh heads: this one is being made
        if epochs is None or learning_rate is None:
            budget = choose_probe_budget(model, build, train, dev, config, learning_rates=learning_rates,
                                         max_epochs=max_epochs, evaluate=self.evaluate)
            config = apply_budget(config, budget)
        probe = build(model, [], seed=seed)
        train_probes({"backbone": probe}, train, config)
        return probe.head, (f"the backbone's probe head (no MLM head shipped): {len(train)} masked positions, "
                            f"{config.epochs} epoch(s) at lr {config.learning_rate:g}, seed {seed}")

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

    def prepare(self, model: KAdapterModel, texts: Sequence[str] = (), **_) -> str:
        """Nothing to prepare: every causal probe starts from the model's own LM head."""
        return "the model's own LM head"

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

    def objective_head(self, model: KAdapterModel, names: Sequence[str], labels, candidates, *, seed: int = 0,
                       **_):
        # the softmax over the training targets only (the objects are among them): on Gemma the ~20k ranking
        # candidates would make every step ~5x dearer, and the control only has to prefer its objects. h + the
        # learned part, no trainable fusion: through the residual fusion (thrown away with this head) the control's
        # facts stayed in that fusion's W and a fresh probe read the control as the backbone (issue 17)
        probe = causal.build_causal_probe(model, names, seed=seed, fusion="add", loss_token_ids=sorted(set(labels)))
        probe.recipe["head"] = self.prepare(model)
        return probe

    def prompt_features(self, model: KAdapterModel, facts: Sequence[dict], candidates: CandidateVocabulary, *,
                        taps: Sequence[int], cache_root=None):
        return positive_control_data.causal_prompt_features(model, facts, candidates, taps=taps,
                                                            cache_root=cache_root)


def probe_recipe(model: KAdapterModel) -> MaskedRecipe | CausalRecipe:
    """The probe recipe for ``model``'s kind of backbone."""
    return CausalRecipe() if is_causal_lm(model) else MaskedRecipe()
