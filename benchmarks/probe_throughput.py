"""LAMA T-REx probe throughput: facts/s batched vs one fact per forward pass (LAMA's own way), in one run.

    python benchmarks/probe_throughput.py                          # whole T-REx probe batched, 1,000-fact one-by-one subset
    python benchmarks/probe_throughput.py --single-facts 0         # one by one on the whole probe too (slow on CPU)
    python benchmarks/probe_throughput.py --relations P19 P36 --limit 100 --threads 2
    python benchmarks/probe_throughput.py --backbone gemma-3-270m --limit 20 --single-facts 100 --threads 2

Both paths run the same code (:func:`kadapter.probing.lama_features` then :func:`~kadapter.probing.rank_answers`,
ranking over LAMA's common vocabulary ∩ the model's) and differ only in batch size. A probe head's speed does not
depend on its weights, so an untrained head is timed. Model loading and fact selection are not timed. The one-by-one
subset is every n-th kept fact (spread over all relations); its ranks are compared with the batched ones.

On a causal LM (``--backbone gemma-3-270m``) the facts are asked as the next token after ``<bos>`` + the template's
prefix (relations whose object is not last are skipped), the states come from one left-padded forward with position
ids per batch (:class:`kadapter.probing.CausalStates`, written to a temporary folder: the feature-extraction cost,
reported as tokens/s too), and the probe is the model's own LM head (:func:`kadapter.probing.own_head_probe`).
Writes ``benchmarks/results/probe_throughput.json`` (git-ignored) and prints the same JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from data_prep.lama import load_trex_facts
from kadapter import AdapterConfig, KAdapterModel
from kadapter.probing import (
    CausalStates, build_probe, candidate_vocabulary, lama_features, own_head_probe, prefix_facts, prefix_ids,
    rank_answers, select_facts,
)
from kadapter.probing.causal import fact_features

RESULTS = Path(__file__).resolve().parent / "results" / "probe_throughput.json"


def time_probe(model, probe, facts, vocabulary, batch_size: int) -> tuple[float, np.ndarray, dict]:
    """Seconds for features + ranking of ``facts`` at ``batch_size`` facts per forward pass, the ranks, and (causal)
    the feature-extraction part alone."""
    start = time.perf_counter()
    extraction = {}
    if model.kind.causal:
        import tempfile

        with tempfile.TemporaryDirectory() as root:
            tick = time.perf_counter()
            sequences = [prefix_ids(model.tokenizer, f["prefix"]) for f in facts]
            taps = sorted({t for n in probe.adapter_names for t in model.adapters[n].tap_layers})
            states = CausalStates.build(model.backbone, sequences, pad_id=model.tokenizer.pad_token_id, taps=taps,
                                        root=root, batch_size=batch_size)
            seconds = time.perf_counter() - tick
            extraction = {"seconds": round(seconds, 2), "tokens": states.meta["tokens"],
                          "tokens_per_s": round(states.meta["tokens"] / seconds, 1)}
            features = fact_features(model, states, range(len(facts)), [f["gold_id"] for f in facts],
                                     probe.adapter_names)
    else:
        features = lama_features(model, facts, probe.adapter_names, batch_size=batch_size)
    ranks, _ = rank_answers(probe, features, vocabulary, batch_size=batch_size)
    return time.perf_counter() - start, ranks, extraction


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default=None, help="hub name or path; default: the MiniLM")
    parser.add_argument("--adapter", default=None,
                        help="'random' (a paper-shaped adapter scaled to the backbone) or a trained adapter folder; "
                             "default: backbone only")
    parser.add_argument("--relations", nargs="*", default=None, help="T-REx relation ids (default: all 41)")
    parser.add_argument("--limit", type=int, default=None, help="facts per relation (default: all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--single-facts", type=int, default=1000,
                        help="facts for the one-per-forward path (0: all of them)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: stable timings on a shared CPU; 0: torch's choice)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = KAdapterModel.from_backbone(args.backbone)
    if args.adapter == "random":
        h = model.hidden_size
        model.add_adapter("factual", AdapterConfig(hidden_size=h, num_attention_heads=max(1, h // 64),
                                                   intermediate_size=4 * h))
    elif args.adapter:
        model.add_adapter("factual", args.adapter)
    model.eval()
    probe = own_head_probe(model) if model.kind.causal else build_probe(model, model.adapter_names, seed=0)
    vocabulary = candidate_vocabulary(model.tokenizer)
    facts, _ = load_trex_facts(args.relations, limit=args.limit)
    prompt_report = None
    if model.kind.causal:
        facts, prompt_report = prefix_facts(facts)
    kept, selection = select_facts(facts, model.tokenizer, vocabulary)

    batched_s, batched_ranks, batched_extraction = time_probe(model, probe, kept, vocabulary, args.batch_size)
    step = 1 if args.single_facts <= 0 or args.single_facts >= len(kept) else len(kept) / args.single_facts
    subset_rows = sorted({int(i * step) for i in range(min(len(kept), args.single_facts or len(kept)))})
    single_s, single_ranks, single_extraction = time_probe(model, probe, [kept[i] for i in subset_rows], vocabulary, 1)

    batched_fps, single_fps = len(kept) / batched_s, len(subset_rows) / single_s
    result = {
        "benchmark": "LAMA T-REx probe throughput (features + ranking over the candidate vocabulary)",
        "backbone": model.identity.name_or_path, "adapters": model.adapter_names,
        "kind": model.kind.name,
        "facts": len(kept), "relations": len({f["relation"] for f in kept}), "facts_dropped": selection["skipped"],
        **({"skipped_relations": {r: e["facts"] for r, e in prompt_report["skipped_relations"].items()}}
           if prompt_report else {}),
        "candidates": len(vocabulary),
        "batched": {"batch_size": args.batch_size, "facts": len(kept), "seconds": round(batched_s, 2),
                    "facts_per_s": round(batched_fps, 1),
                    **({"feature_extraction": batched_extraction} if batched_extraction else {})},
        "one_per_forward": {"batch_size": 1, "facts": len(subset_rows), "seconds": round(single_s, 2),
                            "facts_per_s": round(single_fps, 1),
                            "subset": "whole probe" if len(subset_rows) == len(kept) else
                                      f"every {step:.2f}-th kept fact ({len(subset_rows)} of {len(kept)})",
                            "whole_probe_estimate_s": round(len(kept) / single_fps, 1),
                            **({"feature_extraction": single_extraction} if single_extraction else {})},
        "speedup": round(batched_fps / single_fps, 2),
        "ranks_differ_on_subset": int(np.sum(batched_ranks[subset_rows] != single_ranks)),
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "note": ("the model's own LM head (causal LM)" if model.kind.causal else
                 "untrained probe head (speed does not depend on its weights)") +
                "; model loading and fact selection not timed",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
