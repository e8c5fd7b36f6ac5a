"""Downstream fine-tuning: settings × seeds, model selection on dev, test evaluated once at the end.

A *setting* says what is trained on top of the backbone (:class:`Setting`): backbone only, ``+F``, ``+L``, ``+F+L``,
the "w/o knowledge" controls (same adapter architecture, fresh initialisation, frozen or trained) and the
trivial ``majority`` baseline. :func:`run_finetuning` runs every setting with every seed on one task and returns a
JSON-ready results dict; :func:`results_table` and :func:`kadapter.plotting.results_bar_chart` show it. 

The package, by idea (every public name is importable from ``kadapter.finetuning``):

* :mod:`.settings` — :class:`Setting`, the standard comparison, adapters (pre-trained or "w/o knowledge"),
  :class:`FineTuneConfig` and the notebook's profile parameters;
* :mod:`.tasks` — what each task is, loading, encoding, scoring;
* :mod:`.features` — the fixed features (feature cache, frozen adapters at the head's positions) and datasets;
* :mod:`.models` — the task models and their heads' wiring, :func:`build_model`;
* :mod:`.runner` — the run loop (:func:`run_finetuning`), evaluation, finished-run reuse;
* :mod:`.results` — summaries, tables, the paper's numbers and the verdicts.

Why it is cheap where it can be: with the backbone *and* the adapters frozen, their outputs are fixed, and the fusion
is position-wise, so the fused vector at a position depends only on the backbone's and the adapters' vectors at
that position. We therefore run the backbone and every frozen adapter once per example, keep their outputs at the
positions the head reads (the ``@``/``#`` markers, or the first token), and train only fusion + head on those
vectors (:class:`PooledTaskModel`): seeds and settings then cost seconds. Settings with a trained adapter keep the
backbone's hidden states at the adapters' tap layers and run only the adapters; a trainable backbone runs it all.

Model selection uses dev only: every epoch is scored on dev, the best epoch's weights are restored, and only then
is test evaluated, once per (setting, seed).
"""
from __future__ import annotations

from .features import (PooledDataset, SplitFeatures, TapsDataset, TokensDataset, collate_taps, collate_tokens,
                       prepare_features, sequence_dataset, split_features)
from .models import (AdapterTaskModel, PooledTaskModel, SequenceTaskModel, build_model, head_inputs,
                     make_head)
from .results import PAPER_REFERENCE, compare, knowledge_verdicts, paper_reference, results_table, summarize
from .runner import (RESULTS_NAME, decode, evaluate_split, majority_predictions, predict, run_finetuning)
from .settings import (ADAPTER_LETTERS, NOTEBOOK_PAPER_PARAMETERS, NOTEBOOK_SMOKE_PARAMETERS, RANDOM_INIT,
                       FineTuneConfig, Setting, build_adapter, random_init_seed, resolve_adapter_dirs,
                       save_untrained_adapter, setting_name, standard_settings)
from .tasks import (ENTITY_TYPING, MULTIPLE_CHOICE, RELATION, SPLITS, TASKS, TaskData, TaskSpec, encode_task,
                    load_task, score)

_SUBMODULES = {"features", "models", "results", "runner", "settings", "tasks"}
__all__ = sorted(name for name in dir() if not name.startswith("_") and name not in _SUBMODULES | {"annotations"})
