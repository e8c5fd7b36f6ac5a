"""The paper profile's size on one GPU, by arithmetic over the real data: tokens, feature-cache bytes, FLOPs.

    python benchmarks/paper_arithmetic.py runs/rehearsal-full/backbone [--factual-dir DIR] > benchmarks/results/paper_arithmetic.json

Tokenises every data set of ``--profile paper`` with the library's own encoders and a RoBERTa byte-level BPE
tokenizer (the rehearsal checkpoint's, trained on the shared data's text; its counts are close to, not equal to,
roberta-large's), at the paper profile's max lengths, and counts real tokens (the feature cache stores real tokens
only). Cache bytes = tokens x (taps + last layer) x 1024 x 2 (bf16/fp16). FLOPs use the per-token multiply-adds of
RoBERTa-large (302M forward) and of the paper adapter with its concat fusion (49M forward); forward + backward
= 3 x forward. Fine-tuning follows each task's paper recipe (``kadapter.finetuning.paper_recipes``: batch, epochs,
length, the official input format) over the profile's four backbone-trained rows, on the train batches padded as
the kit pads them. Prints JSON; the reading is in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time

from transformers import AutoTokenizer

from kadapter import finetuning as ft
from kadapter.pipeline import PROFILES
from kadapter.pretraining import load_task_data, make_task

HIDDEN, STATES, BYTES = 1024, 4, 2  # taps 0/11/22 + the last layer, 2 bytes per value
BACKBONE_FWD = 302e6  # multiply-adds per token, RoBERTa-large forward
ADAPTER_FWD = 49e6  # per token: the paper adapter (3 adapter layers) + concat fusion, forward


def tokens(column) -> int:
    return int(sum(sum(mask) for mask in column))


def padded_tokens(encoded, kind: str, batch_size: int, seed: int = 0) -> int:
    """Tokens one epoch computes when each shuffled batch is padded to its longest sequence (the kit's collate):
    batch x choices x the longest sequence of the batch, summed over batches."""
    lengths = [[len(ids) for ids in ex] if kind == ft.MULTIPLE_CHOICE else [len(ex)] for ex in encoded["input_ids"]]
    order = random.Random(seed).sample(range(len(lengths)), len(lengths))
    total = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start:start + batch_size]]
        total += sum(len(x) for x in batch) * max(max(x) for x in batch)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tokenizer")
    parser.add_argument("--factual-dir", default=None)
    args = parser.parse_args()
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    paper = PROFILES["paper"]
    pre, fine = paper["02_adapter_pretraining"], paper["03_finetuning"]
    out = {"pretraining": {}, "finetuning": {}}
    started = time.perf_counter()
    for kind in ("factual", "linguistic"):
        settings = {**pre, **pre["kind_overrides"][kind]}
        data, report = load_task_data(kind, factual_data_dir=args.factual_dir if kind == "factual" else None)
        task = make_task(kind, data)
        counts = {}
        for split in ("train", "dev"):
            encoded = task.encode(data[split], tok, settings["max_length"])
            encoded = encoded[0] if isinstance(encoded, tuple) else encoded
            counts[split] = {"examples": len(encoded), "tokens": tokens(encoded["attention_mask"])}
        total = sum(c["tokens"] for c in counts.values())
        train = counts["train"]["tokens"]
        out["pretraining"][kind] = {
            **counts, "max_length": settings["max_length"], "epochs": settings["epochs"],
            "cache_gb": round(total * HIDDEN * STATES * BYTES / 1e9, 2),
            # one backbone pass over train + dev (the cache), then per epoch: adapter fwd+bwd, the random twin's
            # adapter forward, three heads (small): ~ 3 x 49M + 49M per token
            "pflop": round((2 * BACKBONE_FWD * total + 2 * settings["epochs"] * train * 4 * ADAPTER_FWD) / 1e15, 1)}
    combos = fine["trained_backbone_combinations"]
    seeds = len(fine["seeds"])
    for task_name in fine["tasks"]:
        recipe = ft.PAPER_RECIPES[task_name]  # the paper's recipe per task, official inputs
        config = recipe.finetune_config()
        data = ft.load_task(task_name)
        encoded, _ = ft.encode_task(data, tok, recipe.max_length, input_format=config.input_format)
        counts = {}
        for split, enc in encoded.items():
            seqs, _, choices = ft.sequence_dataset(enc, data.task.kind)
            counts[split] = {"examples": len(enc), "sequences": len(seqs), "tokens": tokens(seqs["attention_mask"])}
        total = sum(c["tokens"] for c in counts.values())
        train_padded = padded_tokens(encoded["train"], data.task.kind, recipe.batch_size)
        steps = math.ceil(counts["train"]["examples"] / recipe.batch_size) * recipe.epochs
        # backbone-trained rows: backbone fwd+bwd (3x) + each frozen adapter's forward (+ its fusion), per epoch over
        # the padded train batches; a dev pass per epoch and a test pass per run (real tokens: their padding is minor)
        adapters = sum(len([x for x in combo.split("+") if x]) for combo in combos)
        dev, test = counts["dev"]["tokens"], counts["test"]["tokens"]
        trained = seeds * (len(combos) * (recipe.epochs * (train_padded * 2 * 3 * BACKBONE_FWD
                                                           + dev * 2 * BACKBONE_FWD) + test * 2 * BACKBONE_FWD)
                           + adapters * recipe.epochs * train_padded * 2 * ADAPTER_FWD)
        out["finetuning"][task_name] = {
            **counts, "recipe": {"batch_size": recipe.batch_size, "epochs": recipe.epochs,
                                 "max_length": recipe.max_length, "optimizer_steps_per_run": steps},
            "train_tokens_padded_per_epoch": train_padded,
            "cache_gb": round(total * HIDDEN * STATES * BYTES / 1e9, 2),
            "backbone_trained_rows": len(combos), "backbone_trained_pflop": round(trained / 1e15, 1),
            "frozen_rows_pflop": round(2 * BACKBONE_FWD * total / 1e15, 1)}
    trained = sum(t["backbone_trained_pflop"] for t in out["finetuning"].values())
    rest = sum(t["pflop"] for t in out["pretraining"].values()) + sum(
        t["frozen_rows_pflop"] for t in out["finetuning"].values())
    # assumed sustained throughputs (not measured here): bf16 autocast ~100 TFLOP/s; float32 (the paper profile's
    # fine-tuning, as the official code; PyTorch's default fp32 matmuls, no TF32) ~20 TFLOP/s on an A100/H100-class GPU
    out["total"] = {"backbone_trained_pflop_fp32": round(trained, 1), "other_pflop_bf16": round(rest, 1),
                    "hours_at_20_tflops_fp32_plus_100_tflops_bf16": round((trained / 20e-3 + rest / 100e-3) / 3600, 2)}
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
