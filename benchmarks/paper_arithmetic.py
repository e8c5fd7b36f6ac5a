"""The paper profile's size on one GPU, by arithmetic over the real data: tokens, feature-cache bytes, FLOPs.

    python benchmarks/paper_arithmetic.py runs/rehearsal-full/backbone [--factual-dir DIR] > benchmarks/results/paper_arithmetic.json

Tokenises every data set of ``--profile paper`` with the library's own encoders and a RoBERTa byte-level BPE
tokenizer (the rehearsal checkpoint's, trained on the shared data's text; its counts are close to, not equal to,
roberta-large's), at the paper profile's max lengths, and counts real tokens (the feature cache stores real tokens
only). Cache bytes = tokens x (taps + last layer) x 1024 x 2 (bf16/fp16). FLOPs use the per-token multiply-adds of
RoBERTa-large (302M forward) and of the paper adapter with its concat fusion (49M forward); forward + backward
= 3 x forward. Prints JSON; the reading is in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
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
    for task_name in fine["tasks"]:
        data = ft.load_task(task_name)
        encoded, _ = ft.encode_task(data, tok, fine["max_length"])
        counts = {}
        for split, enc in encoded.items():
            seqs, _, choices = ft.sequence_dataset(enc, data.task.kind)
            counts[split] = {"examples": len(enc), "sequences": len(seqs), "tokens": tokens(seqs["attention_mask"])}
        total = sum(c["tokens"] for c in counts.values())
        train, evals = counts["train"]["tokens"], counts["dev"]["tokens"] + counts["test"]["tokens"]
        rows, seeds, epochs = len(fine["trained_backbone_combinations"]), len(fine["seeds"]), fine["trained_epochs"]
        out["finetuning"][task_name] = {
            **counts, "cache_gb": round(total * HIDDEN * STATES * BYTES / 1e9, 2),
            # backbone-trained rows: backbone fwd+bwd (3x) + frozen adapters forward, per epoch over train,
            # plus a forward over dev every epoch and over test once
            "backbone_trained_pflop": round(rows * seeds * (
                epochs * (train * 2 * (3 * BACKBONE_FWD + 2 * ADAPTER_FWD) + evals / 2 * 2 * BACKBONE_FWD)) / 1e15, 1),
            "frozen_rows_pflop": round(2 * BACKBONE_FWD * total / 1e15, 1)}
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
