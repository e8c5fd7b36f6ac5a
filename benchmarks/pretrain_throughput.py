"""Adapter pre-training throughput: backbone pass per step (official) vs the feature cache, and the bound.

Measured in one run, on the same data (real FewRel sentences, relation classification) and the same model:

  (a) official style: the frozen backbone runs forward at every training step;
  (b) our cached path: first epoch = building the cache + one epoch read from it; later epochs read the cache;
  (c) two adapters from one backbone pass (one job, separate optimizers) vs two separate official runs;
  (d) the bound: adapter + head forward/backward alone, on features already in memory on the device.

Each measurement runs `--repeats` times and keeps the fastest (CPU machines here are shared). Examples/s count
training examples per second of wall time (one optimizer step per batch, gradient clipping,
AdamW, bf16 autocast on GPU — the Trainer's step). Peak memory: GPU max allocated, or on CPU the peak resident set
size of this process during the phase (sampled every 5 ms).

    python benchmarks/pretrain_throughput.py                                  # MiniLM on CPU
    python benchmarks/pretrain_throughput.py --backbone roberta-large-shape   # paper adapter, on a GPU

Prints a table and writes JSON to benchmarks/results/pretrain_throughput_<backbone>_<device>.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from kadapter import AdapterConfig, KAdapterModel
from kadapter.backbone import extract_features
from kadapter.cache import CachedCollator, CachedDataset, FeatureCache
from kadapter.encoding import PadCollator, encode_relation_dataset
from kadapter.heads import RelationClassificationHead, TaskModel
from kadapter.model import random_backbone
from kadapter.pretraining import SharedBackbonePass
from kadapter.training import adamw

RESULTS = Path(__file__).resolve().parent / "results"
SMALL_ADAPTER = dict(hidden_size=128, num_transformer_layers=2, num_attention_heads=4, intermediate_size=512)
PAPER_ADAPTER = dict(tap_layers=(0, 11, 22), hidden_size=768, num_transformer_layers=2, num_attention_heads=12,
                     intermediate_size=3072)


# --------------------------------------------------------------------------------------------------- memory
class PeakMemory:
    """Peak memory of a phase: CUDA max allocated, or the process's peak RSS sampled on CPU."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    @contextmanager
    def measure(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            yield
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
            return
        import psutil

        process, stop, peak = psutil.Process(), threading.Event(), [0]

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.005)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.peak = peak[0]


# ----------------------------------------------------------------------------------------------------- setup
def make_encoder(name: str, device: torch.device) -> KAdapterModel:
    if name == "minilm":
        return KAdapterModel.from_backbone().to(device)
    if name == "roberta-large-shape":  # random weights: right for speed, never for knowledge
        from transformers import AutoTokenizer

        from kadapter.backbone import default_backbone_path

        torch.manual_seed(0)
        backbone = random_backbone("roberta", vocab_size=50265, hidden_size=1024, num_hidden_layers=24,
                                   num_attention_heads=16, intermediate_size=4096, max_position_embeddings=514,
                                   pad_token_id=1)
        # Token ids come from MiniLM's tokenizer (ids < 30522 fit RoBERTa's vocabulary): the same real sentences.
        return KAdapterModel(backbone, tokenizer=AutoTokenizer.from_pretrained(default_backbone_path())).to(device)
    raise ValueError(f"unknown backbone {name!r}")


def make_data(encoder: KAdapterModel, n: int, max_length: int):
    from data_prep.eval_sets import load_fewrel

    dataset, _ = load_fewrel()
    labels = {r: i for i, r in enumerate(sorted(set(dataset["relation"])))}
    sample = dataset.shuffle(seed=0).select(range(n))
    encoded, stats = encode_relation_dataset(sample, encoder.tokenizer, max_length, labels)
    return encoded, len(labels), stats


def make_model(encoder: KAdapterModel, adapter: dict, num_labels: int, seed: int) -> TaskModel:
    torch.manual_seed(seed)
    own = KAdapterModel(encoder.backbone, {"factual": AdapterConfig(**adapter)}, tokenizer=encoder.tokenizer)
    return TaskModel(own, RelationClassificationHead(encoder.hidden_size, num_labels)).to(
        next(encoder.backbone.parameters()).device)


# ---------------------------------------------------------------------------------------------- training steps
class Stepper:
    """The Trainer's step for one model: forward under autocast, backward, clip, AdamW."""

    def __init__(self, model: TaskModel, device: torch.device):
        self.model, self.device = model.train(), device
        self.optimizer = adamw(model, 1e-4, 0.01)
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __call__(self, batch: dict) -> None:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss = self.model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


def batches(dataset, collate, batch_size: int):
    """One epoch of collated batches (fixed order: every path sees the same batches)."""
    for start in range(0, len(dataset), batch_size):
        yield collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])


def timed(fn, device) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (all threads) of fn()."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu


def run_epoch(steppers, dataset, collate, batch_size, device, transform=None) -> None:
    for batch in batches(dataset, collate, batch_size):
        batch = to_device(batch, device)
        if transform is not None:
            batch = transform(batch)
        for step in steppers:
            step(batch)


# --------------------------------------------------------------------------------------------------- benchmark
def benchmark(args) -> dict:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    encoder = make_encoder(args.backbone, device)
    adapter = PAPER_ADAPTER if args.adapter == "paper" else SMALL_ADAPTER
    encoded, num_labels, stats = make_data(encoder, args.examples, args.max_length)
    taps = AdapterConfig(**adapter).resolved(encoder.identity.num_hidden_layers).tap_layers
    pad = PadCollator(encoder.tokenizer.pad_token_id)
    n, bs, memory = len(encoded), args.batch_size, PeakMemory(device)
    storage_dtype = "bfloat16" if device.type == "cuda" else "float16"
    read_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rows: dict[str, dict] = {}

    def measure(name, fn, examples=n, **extra):
        """Run `fn` `repeats` times; keep the fastest (the machine may be shared) and its peak memory."""
        best = None
        for _ in range(args.repeats):
            with memory.measure():
                seconds, cpu = timed(fn, device)
            if best is None or seconds < best[0]:
                best = (seconds, cpu, memory.peak)
        seconds, cpu, peak = best
        rows[name] = {"seconds": round(seconds, 3), "examples_per_s": round(examples / seconds, 2),
                      "cpu_seconds": round(cpu, 3), "examples_per_cpu_s": round(examples / cpu, 2),
                      "peak_memory_mb": round(peak / 2**20, 1), **{k: v() for k, v in extra.items()}}
        print(f"{name:<38} {examples / seconds:9.1f} ex/s  {seconds:8.2f} s  (cpu {cpu:8.2f} s)  "
              f"peak {peak / 2**20:8.0f} MB", flush=True)

    # warm-up (kernels, allocator, lazy init): one batch through every path
    warm = make_model(encoder, adapter, num_labels, 0)
    Stepper(warm, device)(to_device(pad([encoded[i] for i in range(min(bs, n))]), device))
    del warm

    # (a) official: backbone forward at every step
    model = make_model(encoder, adapter, num_labels, 1)
    step = Stepper(model, device)
    measure("a_official_backbone_every_step", lambda: run_epoch([step], encoded, pad, bs, device))

    # (b) cached: first epoch = build the cache (into a fresh folder) + one epoch from it; later epochs read it
    with tempfile.TemporaryDirectory() as root:
        builds = iter(range(args.repeats))
        holder = {}

        def first_epoch():
            cache = FeatureCache.build(encoder, encoded, tokenizer=encoder.tokenizer, max_length=args.max_length,
                                       taps=taps, root=Path(root) / str(next(builds)), storage_dtype=storage_dtype,
                                       batch_size=2 * bs, device=device, progress=False)
            holder["cache"] = cache
            run_epoch([step], CachedDataset(cache, encoded), CachedCollator(cache, read_dtype), bs, device)

        measure("b_cached_first_epoch", first_epoch, cache_build_s=lambda: holder["cache"].meta["seconds"],
                cache_mb=lambda: round(holder["cache"].nbytes / 2**20, 1))
        cache = holder["cache"]
        data, collate = CachedDataset(cache, encoded), CachedCollator(cache, read_dtype)
        measure("b_cached_later_epochs", lambda: [run_epoch([step], data, collate, bs, device)
                                                  for _ in range(args.later_epochs)], examples=n * args.later_epochs)

        # (d) the bound: features already in memory on the device, batches pre-made
        ready = [to_device(b, device) for b in batches(data, collate, bs)]
        measure("d_bound_features_in_memory", lambda: [step(b) for _ in range(args.later_epochs) for b in ready],
                examples=n * args.later_epochs)
        del ready

        # two adapters reading the cache (later epochs): each batch is read once for both
        two = [Stepper(make_model(encoder, adapter, num_labels, s), device) for s in (1, 2)]
        measure("c_two_adapters_cached_later_epoch", lambda: run_epoch(two, data, collate, bs, device))

    # (c) two adapters, one backbone pass per batch, vs two separate official runs
    two = [Stepper(make_model(encoder, adapter, num_labels, s), device) for s in (1, 2)]
    shared = SharedBackbonePass(encoder.backbone, taps)
    measure("c_two_adapters_one_backbone_pass", lambda: run_epoch(two, encoded, pad, bs, device, shared))
    separate = [Stepper(make_model(encoder, adapter, num_labels, s), device) for s in (1, 2)]
    measure("c_two_separate_official_runs", lambda: [run_epoch([s], encoded, pad, bs, device) for s in separate])

    def ratios_of(r: dict, seconds: str) -> dict:
        return {
            "later_epochs_vs_official": round(r["b_cached_later_epochs"] / r["a_official_backbone_every_step"], 2),
            "first_epoch_vs_official": round(r["b_cached_first_epoch"] / r["a_official_backbone_every_step"], 2),
            "later_epochs_vs_bound": round(r["b_cached_later_epochs"] / r["d_bound_features_in_memory"], 2),
            "two_adapters_one_pass_vs_separate": round(
                rows["c_two_separate_official_runs"][seconds] / rows["c_two_adapters_one_backbone_pass"][seconds], 2),
        }

    ratios = ratios_of({k: v["examples_per_s"] for k, v in rows.items()}, "seconds")
    cpu_ratios = ratios_of({k: v["examples_per_cpu_s"] for k, v in rows.items()}, "cpu_seconds")
    adapter_params = sum(p.numel() for p in model.encoder.adapters.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    cpu = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "backbone": args.backbone, "backbone_parameters": sum(p.numel() for p in encoder.backbone.parameters()),
        "adapter": {**adapter, "tap_layers": list(taps), "parameters": adapter_params},
        "trainable_parameters_per_model": trainable,
        "examples": n, "batch_size": bs, "max_length": args.max_length, "later_epochs": args.later_epochs,
        "repeats": args.repeats,
        "mean_tokens": round(sum(len(x) for x in encoded["input_ids"]) / n, 1), "truncated": stats.truncated,
        "autocast": "bf16" if device.type == "cuda" else "none (fp32)", "cache_storage": storage_dtype,
        "torch": torch.__version__, "rows": rows, "ratios": ratios, "ratios_cpu_time": cpu_ratios,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="minilm", choices=["minilm", "roberta-large-shape"])
    parser.add_argument("--adapter", default=None, choices=["small", "paper"],
                        help="default: small on MiniLM, paper (taps 0,11,22, hidden 768, N=2) on RoBERTa-large")
    parser.add_argument("--examples", type=int, default=None, help="default: 256 on CPU, 4096 on GPU")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--later-epochs", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (CPU runs only)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each measurement; the fastest is kept")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    gpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    args.adapter = args.adapter or ("paper" if args.backbone == "roberta-large-shape" else "small")
    args.examples = args.examples or (4096 if gpu else 256)
    result = benchmark(args)
    print(json.dumps({"wall": result["ratios"], "cpu_time": result["ratios_cpu_time"]}, indent=2))
    out = Path(args.out) if args.out else RESULTS / f"pretrain_throughput_{args.backbone}_{'gpu' if gpu else 'cpu'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("written to", out)
    return result


if __name__ == "__main__":
    main()
