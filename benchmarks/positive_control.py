"""Is the probe able to say "yes"? The positive control measured, side by side with the backbone and its twins.

    python benchmarks/positive_control.py --backbone gemma-3-270m --relations 10 --facts 50 --threads 2
    python benchmarks/positive_control.py                      # the default MiniLM, same sizes

One run: a positive-control adapter (the gemma profile's factual-adapter architecture: hidden 128, 1 layer, 4 heads,
FFN 256) is trained with the backbone's own objective on statements of the probed facts mixed with the probe's
general sentences (:func:`kadapter.probing.train_positive_control`); its init-draw twin and its norm-matched random
twin are attached; every variant gets the probe recipe for each probe budget given (``--probe-epochs``), the same
batches and seed; LAMA T-REx is scored on the first ``--facts`` facts of the first ``--relations`` askable relations,
and each row is compared with the backbone's probe by :mod:`kadapter.statistics` (paired bootstrap over facts,
stratified by relation; exact McNemar). Adapter diagnostics (steps, distance from init, learned share at the LAMA
prompts) are reported per adapter. Writes ``benchmarks/results/positive_control[_<backbone>].json`` (git-ignored)
and prints the same JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--relations", type=int, default=10, help="first N relations the probe can ask")
    parser.add_argument("--relation-ids", nargs="+", default=None, help="these relations instead (e.g. P19 P36)")
    parser.add_argument("--facts", type=int, default=50, help="first N facts of each relation file")
    parser.add_argument("--sentences", type=int, default=300, help="general sentences (probe corpus)")
    parser.add_argument("--max-length", type=int, default=40)
    parser.add_argument("--pc-epochs", type=int, default=15)
    parser.add_argument("--pc-lr", type=float, default=1e-2)
    parser.add_argument("--statement-repeats", type=int, default=1, help="each statement this often per epoch")
    parser.add_argument("--head-epochs", type=int, default=None, help="own MLM head (encoder without one): epochs; "
                        "default: the last --probe-epochs")
    parser.add_argument("--head-lr", type=float, default=None, help="own MLM head: learning rate; default --probe-lr")
    parser.add_argument("--adapter", type=int, nargs=4, default=[128, 4, 256, 1],
                        metavar=("HIDDEN", "HEADS", "FFN", "LAYERS"), help="the control's architecture")
    parser.add_argument("--probe-epochs", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--probe-lr", type=float, default=1e-3)
    parser.add_argument("--probe-batch", type=int, default=128)
    parser.add_argument("--tag", default="", help="appended to the result file's name")
    parser.add_argument("--reuse", action="store_true",
                        help="load the positive control trained by an earlier run in --work-dir instead of training")
    parser.add_argument("--no-init-twin", action="store_true", help="leave out the init-draw twin's row (time)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--work-dir", default=None, help="default: a temporary folder")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    import torch

    from data_prep.lama import load_trex_facts
    from kadapter import AdapterConfig, KAdapterModel
    from kadapter.comparisons import lama_comparisons, lama_plan
    from kadapter.diagnostics import adapter_diagnostics
    from kadapter.probing import (POSITIVE_CONTROL, POSITIVE_CONTROL_ROW, add_control_adapter,
                                  add_norm_matched_adapter, candidate_vocabulary, general_corpus, summary_rows,
                                  train_positive_control, train_variants)
    from kadapter.probing.recipes import probe_recipe
    from kadapter.statistics import verdict
    from kadapter.training import TrainConfig

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="kadapter-positive-control-"))
    states = work / "states"
    started = time.perf_counter()
    timings = {}
    model = KAdapterModel.from_backbone(args.backbone)
    recipe = probe_recipe(model)
    facts, _ = load_trex_facts(limit=args.facts)
    askable, _ = recipe.statement_facts(model, facts, candidate_vocabulary(model.tokenizer))
    relations = args.relation_ids or sorted({f["relation"] for f in askable}, key=lambda r: (len(r), r))[:args.relations]
    facts = [f for f in facts if f["relation"] in relations]
    candidates = candidate_vocabulary(model.tokenizer)
    texts, corpus_info = general_corpus(args.sentences)
    hidden, heads, ffn, layers = args.adapter
    config = AdapterConfig(hidden_size=hidden, num_attention_heads=heads, intermediate_size=ffn,
                           num_transformer_layers=layers)

    tick = time.perf_counter()
    # an encoder without an MLM head gets one trained on the backbone alone (here: the last probe budget below);
    # every probe starts from it and the control is trained through it
    recipe.prepare(model, texts, epochs=args.head_epochs or args.probe_epochs[-1],
                   learning_rate=args.head_lr or args.probe_lr,
                   batch_size=args.probe_batch, max_length=args.max_length, cache_root=states,
                   output_dir=work / "own_head")
    timings["own head (s)"] = round(time.perf_counter() - tick, 1)
    tick = time.perf_counter()
    if args.reuse:  # the adapter and its results.json from an earlier run with the same work dir
        pc = json.loads((work / "positive_control" / "results.json").read_text())
        model.add_adapter(POSITIVE_CONTROL, pc["models"][POSITIVE_CONTROL]["adapter_dir"])
    else:
        pc = train_positive_control(model, config, facts, texts, output_dir=work / "positive_control",
                                    candidates=candidates, epochs=args.pc_epochs, learning_rate=args.pc_lr,
                                    max_length=args.max_length, cache_root=states, seed=0,
                                    statement_repeats=args.statement_repeats, recipe=recipe)
    timings["positive control training (s)"] = round(time.perf_counter() - tick, 1)
    init_twin = add_control_adapter(model, POSITIVE_CONTROL, seed=0)
    norm_twin = add_norm_matched_adapter(model, POSITIVE_CONTROL, seed=1)
    variants = {"backbone": [], POSITIVE_CONTROL_ROW: [POSITIVE_CONTROL],
                f"{POSITIVE_CONTROL_ROW} (w/o knowledge)": [init_twin],
                f"{POSITIVE_CONTROL_ROW} (norm-matched random)": [norm_twin]}
    if args.no_init_twin:
        del variants[f"{POSITIVE_CONTROL_ROW} (w/o knowledge)"]

    tick = time.perf_counter()
    prompts, rows, cols = recipe.prompt_features(model, facts, candidates, taps=model.tap_layers, cache_root=states)
    entry = pc["models"][POSITIVE_CONTROL]
    diagnostics = {
        name: adapter_diagnostics(model.adapters[name], steps=steps, init_seed=seed, features=prompts, rows=rows,
                                  cols=cols, name=name, warn=False)
        for name, steps, seed in [(POSITIVE_CONTROL, pc["steps"], entry["seed"]), (init_twin, 0, 0),
                                  (norm_twin, None, None)]}
    timings["diagnostics (s)"] = round(time.perf_counter() - tick, 1)

    tick = time.perf_counter()
    data = recipe.corpus_features(model, texts, max_length=args.max_length, cache_root=states)
    train, dev = data.split_by_group(0.1, seed=0)
    timings["corpus features (s)"] = round(time.perf_counter() - tick, 1)
    budgets = {}
    for epochs in args.probe_epochs:
        tick = time.perf_counter()
        train_config = TrainConfig(output_dir=str(work / f"probe_{epochs}"), epochs=epochs,
                                   batch_size=args.probe_batch, learning_rate=args.probe_lr, warmup_ratio=0.06,
                                   progress=False, resume=False)
        probes, by_variant, summaries = train_variants(model, variants, train, seeds=[0], config=train_config,
                                                       dev=dev, build=recipe.builder(train, candidates),
                                                       evaluate=recipe.evaluate)
        trained_s = time.perf_counter() - tick
        result = recipe.lama_probe(model, probes, facts, vocabulary=candidates, cache_root=states, typed=False)
        comparisons = lama_comparisons(result, by_variant, plan=lama_plan(list(by_variant)))
        budgets[f"{epochs} epoch(s)"] = {
            "probe training (s)": round(trained_s, 1), "seconds": round(time.perf_counter() - tick, 1),
            "dev": {v: summaries[0]["runs"][names[0]]["history"][-1] for v, names in by_variant.items()},
            "gates": {name: probe.gate_values() for name, probe in probes.items()},
            "summary": summary_rows(result, by_variant, metrics=("p@1", "p@10", "mrr")),
            "comparisons": [c.to_dict() for c in comparisons], "verdicts": [verdict(c) for c in comparisons]}
    report = {
        "backbone": model.identity.name_or_path, "kind": model.kind.name, "relations": relations,
        "facts": result["facts"]["total"], "candidates": len(candidates), "general_sentences": corpus_info["used"],
        "adapter": pc["adapter"], "positive_control": {k: pc[k] for k in ("objective", "data", "training", "steps",
                                                                          "seconds")}
        | {"statement_p@1": entry["statement_p@1"]},
        "diagnostics": diagnostics, "probe_lr": args.probe_lr, "probe_batch": args.probe_batch,
        "budgets": budgets, "timings": timings, "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(), "seconds": round(time.perf_counter() - started, 1)}
    text = json.dumps(report, indent=2, default=str)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    suffix = ("" if args.backbone is None else "_" + Path(args.backbone).name) + (args.tag and "_" + args.tag)
    (out / f"positive_control{suffix}.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
