"""Statement-ranking knowledge probe (BEAR / lm-pub-quiz style), head for head, through adapters.

For each instance the relation's template is filled with the subject and, in turn, every answer of the relation's
answer space; each statement is scored by its log-likelihood (:mod:`kadapter.probing.statement_scores`: summed
token log-probabilities on a causal LM, pseudo-log-likelihood on a masked LM, exactly as lm-pub-quiz 0.3.3); the
instance is right when the gold statement scores highest (ties: the first answer, as lm-pub-quiz). Accuracy per
relation, the macro mean over relations, and chance (1 / answer-space size) beside them.

Every head is scored on the same statements from one backbone pass: the backbone with its own head (a causal LM's
LM head; a masked LM's pre-trained MLM head when it has one) and every probe of a saved probe set (notebook 04's
trained heads over the fusion: backbone, +adapter, its random twin...).

Command line::

    python -m kadapter.probing.statements DATASET_DIR --backbone NAME_OR_PATH --output OUT_DIR [--probe-set DIR]

writes ``OUT_DIR/results.json``: ``accuracy`` (relation -> accuracy), ``mean``, ``chance`` (relation -> 1/|answers|),
``chance_mean``, ``predictions`` (relation -> predicted ``obj_label`` per instance, in file order) for the reference
head (own head, else the first probe), and the same under ``heads`` for every head.

Every finished relation is written at once to ``OUT_DIR/partial/`` (:mod:`kadapter.probing.statement_partial`): a
run killed half-way, run again with the same dataset and heads, scores only the relations still missing and says how
many it resumed; with another dataset or heads it starts over, saying what changed.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Mapping, Sequence

import torch

from data_prep.statements import StatementRelation, check_template, read_statement_dataset

from ..model import KAdapterModel
from .statement_scores import causal_scores, encode_causal, encode_masked, masked_scores

from ..progress import progress_bar, progress_log
from ..run_folder import write_json
from .statement_partial import KEPT, PartialResults, run_identity, score_summary

OWN_HEAD = "own head"


def fill_statement(template: str, subject: str, answer: str, capitalize: bool = True) -> str:
    """lm-pub-quiz's ``Templater.replace_placeholders``: every ``[X]`` -> subject, ``[Y]`` -> answer, first
    character upper-cased."""
    text = template.replace("[X]", subject).replace("[Y]", answer)
    return text[:1].upper() + text[1:] if capitalize else text


def reference_heads(model: KAdapterModel) -> dict[str, torch.nn.Module]:
    """The backbone with its own head, when it has one: a causal LM's LM head; a masked LM's pre-trained MLM head
    (none on the default MiniLM: then no reference, and only a probe set can be scored)."""
    if model.kind.causal:
        from .causal import own_head_probe

        return {OWN_HEAD: own_head_probe(model)}
    from .masked import build_probe, pretrained_mlm_head

    try:
        head = pretrained_mlm_head(model, model.identity.name_or_path)
    except (ValueError, OSError):
        return {}
    return {OWN_HEAD: build_probe(model, [], head=head, recipe={"recipe": "pre-trained MLM head"})}


def score_instances(model: KAdapterModel, heads: Mapping[str, torch.nn.Module], template: str,
                    subjects: Sequence[str], answers: Sequence[str], batch_size: int = 64
                    ) -> dict[str, torch.Tensor]:
    """(len(subjects), len(answers)) statement scores per head, for one template and answer space."""
    statements = [[fill_statement(template, s, a) for a in answers] for s in subjects]
    out = {name: torch.zeros(len(subjects), len(answers), dtype=torch.float64) for name in heads}
    if model.kind.causal:  # one prefix per subject: its statements share it
        groups = [encode_causal(model.tokenizer, group) for group in statements]
        for i, scores in enumerate(causal_scores(model, heads, groups, batch_size)):
            for name in heads:
                out[name][i] = scores[name]
    else:  # masked copies of the whole relation batched together
        flat = [s for group in statements for s in group]
        scores = masked_scores(model, heads, encode_masked(model.tokenizer, flat), batch_size)
        for name in heads:
            out[name] = scores[name].view(len(subjects), len(answers))
    return out


def first_argmax(scores: torch.Tensor) -> torch.Tensor:
    """Index of the highest score per row, the first one on ties (lm-pub-quiz: ``list.index(max(...))``)."""
    best = scores.max(dim=-1, keepdim=True).values
    return (scores == best).long().argmax(dim=-1)


def score_relation(model: KAdapterModel, heads: Mapping[str, torch.nn.Module], relation: StatementRelation,
                   template_index: int = 0, batch_size: int = 64) -> dict:
    """Scores, predictions and accuracy of every head on one relation."""
    template = check_template(relation.template(template_index), relation.path, relation.relation,
                              f"templates[{template_index}]")
    if not relation.instances:
        raise ValueError(f"{relation.path}: relation {relation.relation} has no instance to ask")
    scores = score_instances(model, heads, template, [i["sub_label"] for i in relation.instances],
                             relation.answers, batch_size)
    gold = torch.tensor(relation.gold())
    out = {}
    for name, table in scores.items():
        predicted = first_argmax(table)
        correct = (predicted == gold).long()
        out[name] = {"accuracy": float(correct.float().mean()), "correct": correct.tolist(),
                     "predictions": [relation.answers[k] for k in predicted.tolist()],
                     "score_summary": score_summary(table, gold), "scores": table.tolist()}
    return out


def statement_probe(model: KAdapterModel, heads: Mapping[str, torch.nn.Module],
                    dataset: Mapping[str, StatementRelation], *, template_index: int = 0, batch_size: int = 64,
                    keep_scores: bool = False, output_dir: str | Path | None = None) -> dict:
    """Every head on every relation of ``dataset``. Returns the results layout of ``results.json`` (see the module
    doc), with per head ``correct`` (relation -> 0/1 per instance) for paired comparisons, ``score_summary``
    (relation -> per instance the gold's score, the top score and the gold's rank) and with ``keep_scores`` the
    statement scores too.

    With ``output_dir``, each relation's results are written to ``output_dir/partial`` as soon as it is done, and the
    relations a previous run of the same identity finished there are read back instead of scored (``resumed`` lists
    them); ``statements`` counts every statement of the results, ``scored_statements`` those scored by this call."""
    if not heads:
        raise ValueError("no head to score: this backbone has no head of its own; give a probe set")
    start = time.perf_counter()
    kept = KEPT + (("scores",) if keep_scores else ())
    partial = None if output_dir is None else PartialResults(output_dir, run_identity(
        model, heads, dataset, template_index=template_index, keep_scores=keep_scores))
    finished = {} if partial is None else {r: partial.load(r) for r in dataset}
    resumed = [r for r, result in finished.items() if result is not None]
    if partial is not None:
        progress_log(f"statement probe: {len(resumed)} of {len(dataset)} relations resumed from {partial.folder}"
                     + (f" ({', '.join(resumed)})" if resumed else "")
                     + f"; {len(dataset) - len(resumed)} to score")
    per_head = {name: {key: {} for key in kept} for name in heads}
    statements = scored = 0
    with progress_bar(total=len(dataset), desc="statement probe", unit="relation") as bar:
        for relation in dataset.values():
            size = len(relation.instances) * len(relation.answers)
            result = finished.get(relation.relation)
            if result is None:
                bar.set_postfix(relation=relation.relation, statements=size)  # the relation being scored
                result = score_relation(model, heads, relation, template_index, batch_size)
                result = {name: {key: r[key] for key in kept} for name, r in result.items()}
                if partial is not None:
                    partial.save(relation.relation, result, statements=size, chance=relation.chance)
                scored += size
            statements += size
            for name, r in result.items():
                for key in kept:
                    per_head[name][key][relation.relation] = r[key]
            bar.set_postfix(done=relation.relation, accuracy=next(iter(result.values()))["accuracy"])
            bar.update(1)
    chance = {r.relation: r.chance for r in dataset.values()}
    for entry in per_head.values():
        entry["mean"] = sum(entry["accuracy"].values()) / len(entry["accuracy"])
    reference = next(iter(per_head))
    return {"reference": reference, **{k: per_head[reference][k] for k in ("accuracy", "mean", "predictions")},
            "chance": chance, "chance_mean": sum(chance.values()) / len(chance), "heads": per_head,
            "relations": {r.relation: {"instances": len(r.instances), "answers": len(r.answers),
                                       "type": r.info.get("type"), "label": r.info.get("label"),
                                       "template": r.template(template_index)} for r in dataset.values()},
            "statements": statements, "scored_statements": scored, "resumed": resumed,
            "seconds": time.perf_counter() - start,
            "scoring": "causal: summed token log-probabilities" if model.kind.causal
            else "masked: pseudo-log-likelihood (within_word_l2r)"}


def accuracy_by_type(results: Mapping) -> list[dict]:
    """Per relation type (LAMA's 1-1 / N-1 / N-M) and head: macro accuracy, macro chance, relations above chance."""
    rows = []
    types = sorted({info["type"] or "unknown" for info in results["relations"].values()})
    for kind in types:
        rels = [r for r, info in results["relations"].items() if (info["type"] or "unknown") == kind]
        chance = sum(results["chance"][r] for r in rels) / len(rels)
        for name, entry in results["heads"].items():
            acc = [entry["accuracy"][r] for r in rels]
            rows.append({"type": kind, "head": name, "relations": len(rels), "accuracy": sum(acc) / len(acc),
                         "chance": chance,
                         "above_chance": sum(a > results["chance"][r] for a, r in zip(acc, rels))})
    return rows


def rank_answers(model: KAdapterModel, heads: Mapping[str, torch.nn.Module], template: str, subject: str,
                 answers: Sequence[str] | str):
    """The demo's question: every head's ranking of ``answers`` (a list, or one comma-separated string) for
    ``template`` ([X], [Y]) and ``subject``, as a DataFrame (answer, statement, then per head its summed
    log-likelihood and rank; sorted by the first head)."""
    import pandas as pd

    template = check_template(template, "<demo>", "typed template", "template")
    if isinstance(answers, str):
        answers = answers.split(",")
    answers = [a.strip() for a in answers if a.strip()]
    if not answers:
        raise ValueError("give at least one answer to rank")
    scores = score_instances(model, heads, template, [subject], answers)
    frame = pd.DataFrame({"answer": answers, "statement": [fill_statement(template, subject, a) for a in answers]})
    for name, table in scores.items():
        frame[f"{name}: log-likelihood"] = table[0].numpy()
        frame[f"{name}: rank"] = frame[f"{name}: log-likelihood"].rank(ascending=False, method="min").astype(int)
    return frame.sort_values(f"{next(iter(heads))}: rank").reset_index(drop=True)


# =====================================================================================================================
# Command line
# =====================================================================================================================
def load_heads(backbone: str | None, probe_set: str | None) -> tuple[KAdapterModel, dict[str, torch.nn.Module]]:
    """The model and every head to score: its own head (when it has one), then a probe set's probes."""
    if probe_set:
        from .variants import load_probe_set

        model, probes = load_probe_set(probe_set, backbone=backbone)
        return model, {**reference_heads(model), **probes}
    model = KAdapterModel.from_backbone(backbone)
    return model, reference_heads(model)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m kadapter.probing.statements", description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="an lm-pub-quiz dataset folder (metadata_relations.json + <relation>.jsonl)")
    parser.add_argument("--backbone", default=None, help="hub name, path or alias (default: MiniLM); with "
                        "--probe-set: the probe set's backbone is loaded from here instead of its saved path")
    parser.add_argument("--output", required=True, help="folder for results.json and partial/ (each finished "
                        "relation, so that a rerun resumes a killed run)")
    parser.add_argument("--probe-set", default=None, help="a saved probe set (notebook 04): score every probe")
    parser.add_argument("--relations", nargs="*", default=None)
    parser.add_argument("--max-instances", type=int, default=None, help="first N instances per relation")
    parser.add_argument("--template-index", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64, help="statements (causal) or masked copies per forward pass")
    args = parser.parse_args(argv)
    dataset, report = read_statement_dataset(args.dataset, args.relations, args.max_instances)
    model, heads = load_heads(args.backbone, args.probe_set)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    results = statement_probe(model, heads, dataset, template_index=args.template_index, batch_size=args.batch_size,
                              output_dir=out)
    results["skipped"] = report.to_dict()
    write_json(out / "results.json", results)
    print(f"{len(dataset)} relations ({len(results['resumed'])} resumed), {results['scored_statements']:,} "
          f"statements scored in {results['seconds']:.0f} s; skipped: {report.total_skipped}")
    for name, entry in results["heads"].items():
        print(f"{name}: macro accuracy {entry['mean']:.3f} (chance {results['chance_mean']:.3f})")
    print(f"wrote {out / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
