"""LAMA-style knowledge probing, head for head: the same probe recipe for every model compared.

One module per idea:

- :mod:`~kadapter.probing.vocabulary`: candidate answers (LAMA's common vocabulary ∩ the model's single tokens) and
  which facts have a single-token object among them;
- :mod:`~kadapter.probing.features`: frozen features at the predicting positions, the probe output, the general
  English corpus probe heads train on;
- :mod:`~kadapter.probing.masked`: the masked-LM probe (encoders: MiniLM, BERT, RoBERTa);
- :mod:`~kadapter.probing.causal`: the next-token probe for causal LMs (Gemma), with :mod:`~kadapter.probing.states`
  (the backbone's states computed once and cached);
- :mod:`~kadapter.probing.ranking`: ranks, the majority baseline, metrics per relation and macro;
- :mod:`~kadapter.probing.results`: summaries over seeds, per-relation tables, hold-out information;
- :mod:`~kadapter.probing.budget`: the probe's training budget (learning rate, epochs), chosen on dev for the
  backbone variant and applied to every variant;
- :mod:`~kadapter.probing.variants`: adapter combinations, "w/o knowledge" twins, training variants side by side,
  saving / loading a probe set.
- :mod:`~kadapter.probing.statements` (+ :mod:`~kadapter.probing.statement_scores`, and
  :mod:`~kadapter.probing.statement_partial` for the per-relation results a rerun resumes): statement ranking (BEAR /
  lm-pub-quiz style): whole statements with every answer of the answer space, scored by log-likelihood, head for head;
  ``python -m kadapter.probing.statements``. Not re-exported here (import it from its module).

Everything is re-exported here, so ``from kadapter.probing import ...`` works as before the split.
"""
from .budget import apply_budget, choose_probe_budget, probe_dev_loss
from .causal import (
    CausalLMProbe, TiedLMHead, build_causal_probe, causal_corpus_features, causal_lama_probe, causal_predict_topk,
    cloze_prefix, next_token_accuracy, object_is_last, own_head_probe, prefix_facts, prefix_ids, template_prefix,
    training_vocabulary,
)
from .features import (BACKBONE_SOURCE, CORPUS_SOURCES, PROBE_CONFIG_NAME, PROBE_WEIGHTS_NAME, MaskedFeatures,
                       ProbeOutput, general_corpus)
from .masked import (
    MASK_PLACEHOLDER, MaskedLMProbe, MaskedLMProbeHead, build_probe,
    compare_topk, encode_cloze, lama_features, lama_probe, mask_tokens, masked_corpus_features,
    masked_position_features, masked_token_accuracy, pad_batch, position_features, predict_topk,
    pretrained_mlm_head, special_token_frame,
)
from .ranking import majority_ranks, metrics_by_relation, rank_answers, score_lama, typed_ranks
from .results import (
    adapter_init_seed, disagreements, holdout_info, pretraining_results, relation_p_at_1, summary_rows,
    write_results,
)
from .states import CausalStates, causal_forward, left_pad
from .variants import (
    CONTROL_SUFFIX, NORM_MATCHED_ROW, add_control_adapter, add_norm_matched_adapter, add_norm_matched_rows, load_probe_set, probe_variants, save_probe_set, seed_name, train_probes,
    train_variants,
)
from .positive_control import POSITIVE_CONTROL, POSITIVE_CONTROL_ROW, statement_text, train_positive_control
from .vocabulary import CandidateVocabulary, candidate_vocabulary, full_vocabulary, select_facts, word_token_id
