"""Cost of the backbone weights fingerprint (kadapter.backbone.weights_fingerprint) on a checkpoint loaded by path.

    python benchmarks/fingerprint.py runs/rehearsal-backbone      # e.g. python -m kadapter.rehearsal <dir> first

Prints JSON: parameters hashed, bytes, the first (full) hash, a repeated call (cache hit on unchanged tensors), the
call after an in-place change (full rehash), and the peak RSS.
"""
import json
import sys
import time

import psutil
import torch

from kadapter.backbone import fingerprinted_tensors, load_backbone, weights_fingerprint


def main(path: str) -> dict:
    torch.set_num_threads(1)
    model, _ = load_backbone(path)
    tensors = fingerprinted_tensors(model)
    timings = {}
    for label in ("first", "repeat"):
        start = time.perf_counter()
        weights_fingerprint(model)
        timings[label] = round(time.perf_counter() - start, 3)
    with torch.no_grad():
        model.encoder.layer[3].intermediate.dense.weight.mul_(1.5)
    start = time.perf_counter()
    weights_fingerprint(model)
    timings["after_in_place_change"] = round(time.perf_counter() - start, 3)
    return {"checkpoint": path, "tensors": len(tensors), "parameters": sum(t.numel() for _, t in tensors),
            "bytes": sum(t.numel() * t.element_size() for _, t in tensors),
            "left_out": list(getattr(model, "_kadapter_newly_initialized", ())), "seconds": timings,
            "rss_gb": round(psutil.Process().memory_info().rss / 2**30, 2)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), indent=2))
