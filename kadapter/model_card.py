"""The README.md model card every saved adapter folder carries, so the folder can be pushed to the Hub as it is.

It is written from what the folder records — the adapter config, the backbone identity and the metadata the trainer
passes to ``save_pretrained`` (task, data and its hold-out, settings, steps, dev metrics beside the random twin and
the majority baseline) — and says "not recorded" for anything it was not given, never a guess.
"""
from __future__ import annotations

import json

NOT_RECORDED = "not recorded"

# Licences of the backbones the kit names (their own model cards); matched on the backbone's name or path.
BACKBONE_LICENCES = (
    ("minilm", "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)"),
    ("gemma", "Gemma Terms of Use (https://ai.google.dev/gemma/terms), not an open-source licence"),
    ("roberta", "MIT (FacebookAI/roberta-large)"),
)
# Licences of the data each adapter kind is pre-trained on (../shared/data/*/SOURCE.md).
DATA_LICENCES = {
    "factual": "LAMA T-REx evidence sentences: CC BY-NC 4.0 (research use); FewRel: MIT; Re-DocRED: MIT",
    "linguistic": "UD English EWT: CC BY-SA 4.0 (share-alike applies to derived data)",
}
RANDOM_WEIGHTS_NOTE = "random weights written by kadapter.rehearsal: no licence, and no knowledge"


def backbone_licence(backbone: dict) -> str:
    name = str(backbone.get("name_or_path", "")).lower()
    if "rehearsal" in name:
        return RANDOM_WEIGHTS_NOTE
    for needle, licence in BACKBONE_LICENCES:
        if needle in name:
            return licence
    return f"{NOT_RECORDED}: see the backbone's own model card"


def _hub_name(name: str) -> str | None:
    """A Hub model id (``owner/name`` or a bare canonical name), not a local path."""
    if not name or name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name:
        return None
    return name


def _fmt(value) -> str:
    if value is None:
        return NOT_RECORDED
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value, sort_keys=True, default=str) + "`"
    return str(value)


def _metrics_table(metadata: dict) -> list[str]:
    rows = [("this adapter", metadata.get("dev_metrics"))]
    for name, metrics in (metadata.get("baselines") or {}).items():
        rows.append((name, metrics))
    names = sorted({k for _, m in rows if isinstance(m, dict) for k in m if k not in ("epoch", "prediction")})
    if not names:
        return [f"Dev metrics: {NOT_RECORDED}."]
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, metrics in rows:
        metrics = metrics if isinstance(metrics, dict) else {}
        lines.append(f"| {label} | " + " | ".join(_fmt(metrics.get(n)) for n in names) + " |")
    return lines


def adapter_card(config: dict, backbone: dict, metadata: dict | None = None, provenance: dict | None = None) -> str:
    """The model card (Markdown with Hub front matter) of one adapter folder."""
    metadata, provenance = dict(metadata or {}), dict(provenance or {})
    task = metadata.get("task")
    hub = _hub_name(str(backbone.get("name_or_path", "")))
    front = ["---", "library_name: kadapter", "tags:", "- kadapter", "- k-adapter", "- knowledge-adapter"]
    front += [f"base_model: {hub}"] if hub else []
    front += ["---", ""]
    title = f"# K-Adapter knowledge adapter: {task or 'adapter'}"
    if metadata.get("untrained"):
        title += " (untrained: a fresh random draw)"
    data = metadata.get("data") or {}
    settings = metadata.get("settings") or {}
    lines = front + [title, "",
                     "A side network over a frozen backbone (K-Adapter, Wang et al., Findings of ACL 2021), saved by "
                     f"kadapter {metadata.get('kadapter_version', '')}".rstrip() + ". Load it with "
                     "`KnowledgeAdapter.from_pretrained(folder, backbone_identity(backbone))`: loading checks that "
                     "the backbone is the one below.", "",
                     "## Backbone", "",
                     f"- name or path: `{backbone.get('name_or_path') or NOT_RECORDED}`",
                     f"- type: {backbone.get('model_type')}, hidden size {backbone.get('hidden_size')}, "
                     f"{backbone.get('num_hidden_layers')} layers",
                     f"- fingerprints: config `{backbone.get('config_fingerprint')}`, "
                     f"weights `{backbone.get('weights_fingerprint')}`", "",
                     "## Adapter", "",
                     f"- taps (hidden-state indices, 0 = embeddings): {list(config.get('tap_layers') or [])}",
                     f"- {config.get('num_transformer_layers')} transformer layers per tap, width "
                     f"{config.get('hidden_size')}, {config.get('num_attention_heads')} heads, FFN "
                     f"{config.get('intermediate_size')}, {config.get('hidden_act')}",
                     f"- attends to padding: {bool(config.get('faithful_padding'))}; causal: "
                     f"{bool(config.get('causal'))}; tap normalisation: {config.get('tap_norm')}", ""]
    if provenance:
        lines += ["## Provenance", ""] + [f"- {k}: {_fmt(v)}" for k, v in provenance.items()] + [""]
    lines += ["## Data", "",
              f"- task: {task or NOT_RECORDED}",
              f"- source: {data.get('source', NOT_RECORDED)}",
              f"- examples: train {_fmt(data.get('train'))}, dev {_fmt(data.get('dev'))}",
              f"- hold-out: {_fmt(data.get('holdout')) if 'holdout' in data else NOT_RECORDED}", "",
              "## Training", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in settings.items()] or [f"- settings: {NOT_RECORDED}"]
    lines += [f"- optimizer steps: {_fmt(metadata.get('steps'))}",
              f"- best dev epoch: {_fmt(metadata.get('best_epoch'))}", "",
              "## Dev metrics", ""] + _metrics_table(metadata) + ["",
              "## Licences", "",
              f"- data: {DATA_LICENCES.get(task, NOT_RECORDED)}",
              f"- backbone: {backbone_licence(backbone)}",
              "- this adapter's weights derive from both; their terms apply to it.", ""]
    return "\n".join(lines)


def _best_dev(run: dict) -> dict | None:
    return next((h for h in run["history"] if h["epoch"] == run["best_epoch"]), None)


def pretraining_card_metadata(results: dict, config, summary: dict, name: str, twins: dict[str, str]) -> dict:
    """What a saved adapter's model card and config record: task, data and its hold-out, settings, steps, dev
    metrics beside its random twin's (when trained alongside) and the majority baseline's. ``config``: the run's
    :class:`kadapter.pretraining.PretrainConfig`."""
    run = summary["runs"][name]
    baselines = {f"random twin ({twin})": _best_dev(summary["runs"][twin])
                 for twin, source in twins.items() if source == name and twin in summary["runs"]}
    baselines.update(results.get("baselines", {}))
    settings = ("max_length", "epochs", "batch_size", "learning_rate", "weight_decay", "warmup_ratio",
                "max_grad_norm", "seed", "patience", "storage_dtype")
    return {"task": results["kind"], "metric": results["metric"],
            "data": {k: v for k, v in results["data"].items() if k != "encoding"},
            "settings": {k: getattr(config, k) for k in settings}, "steps": summary["steps"],
            "best_epoch": run["best_epoch"], "dev_metrics": _best_dev(run), "baselines": baselines}
