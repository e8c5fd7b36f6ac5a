"""The main job: run the notebooks in order, headless with papermill, into a fresh run folder.

    python -m kadapter.pipeline --profile smoke            # sized for a 2-core CPU machine
    python -m kadapter.pipeline --profile paper            # the paper's settings: RoBERTa-large on a GPU
    python -m kadapter.pipeline --resume runs/smoke-...    # finish a run that stopped, skipping finished stages
    python -m kadapter.pipeline --set 00_quickstart.backbone=roberta-base   # override one notebook parameter

A run folder holds each executed notebook, `parameters.json` (what every stage was given), every stage's own output
folder, and `summary.json` (profile, overrides, per stage: status, duration, the `results.json` it wrote, or the
notebook's error: cell, exception type and message, last lines of its traceback). Each notebook runs with a start
timeout and a per-cell timeout sized to the profile; its progress is printed as it runs.

The run's status is "failed" (and the command exits 1) whenever any stage recorded in the run folder failed, this
time or before; the summary's `failed` lists them. A stage's output folder is emptied before it runs (kept, apart
from its `results.json`, when `--resume` finishes it), so its record never shows an earlier run's results. One
pipeline at a time writes a run folder: a second one on the same folder is refused while the first runs.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .notebook_run import NotebookError, NotebookParameterError, check_parameters, execute_notebook
from .run_folder import (PipelineUsageError, failed_stages, finish_run, prepare_output, read_record, read_results,
                         run_lock, write_json)

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"


@dataclass(frozen=True)
class Stage:
    name: str  # also the notebook's file stem
    notebook: str


# In order: each stage may read what earlier stages wrote ("{run}" is replaced by the run folder).
STAGES = [
    Stage("00_quickstart", "00_quickstart.ipynb"),
    Stage("01_data_alignment", "01_data_alignment.ipynb"),
    Stage("02_adapter_pretraining", "02_adapter_pretraining.ipynb"),
    Stage("03_finetuning", "03_finetuning.ipynb"),
    Stage("04_lama_probing", "04_lama_probing.ipynb"),
    Stage("05_probing_demo", "05_probing_demo.ipynb"),
]

# Where stages hand over to each other.
FACTUAL_DATA = "{run}/01_data_alignment/factual_pretraining"
FACTUAL_ADAPTER = "{run}/02_adapter_pretraining/factual/adapters/factual"
LINGUISTIC_ADAPTER = "{run}/02_adapter_pretraining/linguistic/adapters/linguistic"
# notebook 02 with paper_condition=True: the factual adapter pre-trained with LAMA probe facts not held out
FACTUAL_PAPER_ADAPTER = "{run}/02_adapter_pretraining/factual_paper/adapters/factual_paper"
FEATURE_CACHE = "{run}/feature_cache"

# Parameters per profile and stage. `output_dir` is always set by the pipeline.
PROFILES: dict[str, dict[str, dict]] = {
    # Sized for a 2-core CPU machine: every stage runs end to end on a small slice of the real data.
    "smoke": {
        "00_quickstart": {"backbone": None, "adapter_hidden_size": 128, "adapter_heads": 4,
                          "adapter_intermediate_size": 256, "device": "cpu"},
        "01_data_alignment": {"limit": 25, "min_examples": 20, "alignment_docs": 40, "spacy_sentences": 120,
                              "arc_examples": 1},
        "02_adapter_pretraining": {
            "factual_data_dir": FACTUAL_DATA, "train_examples": 256, "dev_examples": 64, "max_length": 48,
            "adapter_hidden_size": 64, "adapter_heads": 4, "adapter_intermediate_size": 128,
            "adapter_transformer_layers": 1, "epochs": 2, "batch_size": 32, "cache_dir": FEATURE_CACHE,
            "kind_overrides": {"factual": {"keep_feature_cache": False}, "linguistic": {"keep_feature_cache": False}},
            # the paper's condition beside ours: built like 01's set, LAMA probe facts not held out
            "paper_condition": True, "paper_condition_data": {"limit": 25, "min_examples": 20},
            "bootstrap_resamples": 2000, "device": "cpu"},
        "03_finetuning": {
            "tasks": ["openentity", "semeval", "cosmosqa"],
            "limits": {"openentity": {"train": 48, "dev": 24, "test": 24},
                       "semeval": {"train": 48, "dev": 24, "test": 24},
                       "cosmosqa": {"train": 16, "dev": 8, "test": 8}},
            "factual_adapter": FACTUAL_ADAPTER, "linguistic_adapter": LINGUISTIC_ADAPTER,
            "seeds": [0, 1], "epochs": 2, "trained_epochs": 1, "learning_rates": None, "max_length": 64,
            "device": "cpu"},
        "04_lama_probing": {
            "factual_adapter": FACTUAL_ADAPTER, "linguistic_adapter": LINGUISTIC_ADAPTER,
            "factual_paper_adapter": FACTUAL_PAPER_ADAPTER,
            # 2,000 sentences: with 60, MiniLM's probe head (trained from nothing: it ships no MLM head) read nothing,
            # not even the positive control; budgets given (the searches run in the notebook's own test): MiniLM's own
            # MLM head 5 epochs at 3e-3, then every probe 2 epochs at 1e-3 from it
            "corpus_sentences": 2000, "seeds": [0, 1], "relations": ["P19", "P36", "P1412"],
            "facts_per_relation": 15, "probe_learning_rates": None, "epochs": 2, "learning_rate": 1e-3,
            "own_head_budget": {"epochs": 5, "learning_rate": 3e-3},  # MiniLM's MLM head, every probe's start
            "bootstrap_resamples": 2000, "device": "cpu",
            # the positive control: the factual adapter's architecture trained on the 45 probed facts' statements
            # (each 20 times per epoch beside the 2,000 sentences), through MiniLM's own (trained) MLM head
            "positive_control": True, "positive_control_epochs": 15, "positive_control_learning_rate": 1e-2,
            "positive_control_statement_repeats": 20},
        "05_probing_demo": {"probe_set": "{run}/04_lama_probing/probe_set", "k": 5, "device": "cpu"},
    },
    # Gemma 3 270M (optional [gemma] extra; a causal LM): every stage after the quickstart — factual and linguistic
    # adapter pre-training, fine-tuning (backbone, +F, +L, +F+L, twins, majority), LAMA probing head for head, the
    # demo — sized to finish within about an hour on a 2-core CPU.
    "gemma": {
        "01_data_alignment": {"limit": 100, "min_examples": 20, "alignment_docs": 40, "spacy_sentences": 120,
                              "arc_examples": 1},
        "02_adapter_pretraining": {
            "backbone": "gemma-3-270m", "adapter_kinds": ["factual", "linguistic"], "factual_data_dir": FACTUAL_DATA,
            "train_examples": 1500, "dev_examples": 300, "max_length": 48, "adapter_hidden_size": 128,
            "adapter_heads": 4, "adapter_intermediate_size": 256, "adapter_transformer_layers": 1, "epochs": 2,
            "batch_size": 32, "cache_dir": FEATURE_CACHE, "storage_dtype": "bfloat16",
            # the paper's condition beside ours, built like 01's set (limit 100) without the hold-out
            "paper_condition": True, "paper_condition_data": {"limit": 100, "min_examples": 20}, "device": "cpu"},
        "03_finetuning": {
            "backbone": "gemma-3-270m", "tasks": ["openentity", "semeval", "cosmosqa"],
            "limits": {"openentity": {"train": 300, "dev": 100, "test": 300},
                       "semeval": {"train": 300, "dev": 100, "test": 300},
                       "cosmosqa": {"train": 60, "dev": 30, "test": 60}},
            "factual_adapter": FACTUAL_ADAPTER, "linguistic_adapter": LINGUISTIC_ADAPTER,
            # one torch thread: on the shared 2-core machine two threads made a pooled fusion step 20x slower
            # (1.1 s vs 53 ms for +F at load ~23; thread oversubscription), which the grid of rates multiplies
            "max_length": 96, "seeds": [0, 1, 2], "epochs": 8, "trained_epochs": 2,
            "learning_rates": [1e-3, 3e-3, 1e-2, 3e-2], "num_threads": 1, "cache_root": FEATURE_CACHE,
            "storage_dtype": "bfloat16", "device": "cpu"},
        "04_lama_probing": {
            "backbone": "gemma-3-270m", "factual_adapter": FACTUAL_ADAPTER, "linguistic_adapter": LINGUISTIC_ADAPTER,
            "factual_paper_adapter": FACTUAL_PAPER_ADAPTER,
            "adapter_combinations": [["factual"], ["factual_paper"], ["factual", "linguistic"]],
            "pretrained_head": True,
            # twice the variants of the held-out-only profile: 400 sentences (was 600) and 2 probe seeds (was 3);
            # the budget search trains the backbone's probe at 2 rates for up to 2 epochs (was: 1 epoch, lr 1e-3)
            "corpus_sentences": 400, "max_length": 40, "batch_size": 128, "probe_learning_rates": [1e-3, 3e-3],
            "probe_max_epochs": 2, "seeds": [0, 1], "relations": None, "facts_per_relation": 40,
            "feature_cache": FEATURE_CACHE, "probe_batch_size": 64, "device": "cpu",
            # the positive control on the probed facts' own prompts (their states are the LAMA probe's, cached once);
            # its own twins are left out to keep the profile's time (the factual adapter keeps both of its twins).
            # 15 epochs: through h + its learned part the control needs the repetitions to hold its facts (Gemma, 500
            # facts: 3 epochs 14% of its statements, 15 epochs 35%, 8 epochs at lr 3e-2 21%; 1,400 facts without
            # dropout: 15 epochs 45%, 25 epochs 38%; benchmarks/README.md); 40 facts per relation (was 100) keep
            # its training within the profile's time
            "positive_control": True, "positive_control_epochs": 15, "positive_control_learning_rate": 1e-2,
            "positive_control_twins": False,
            # statement ranking on all 41 T-REx relations, capped to fit the profile (about 2,000 statements x 4
            # heads); statement_instances/statement_answers None give the full size
            "statement_ranking": True, "statement_relations": None, "statement_instances": 5,
            "statement_answers": 10, "statement_batch_size": 64},
        "05_probing_demo": {"probe_set": "{run}/04_lama_probing/probe_set", "k": 10, "device": "cpu",
                            "prompts": ["The capital of France is [MASK].", "Dante was born in [MASK].",
                                        "The official language of Mauritius is [MASK].", "Ravens can [MASK]."]},
    },
    # The paper's settings: RoBERTa-large (by hub name or a local path) on a GPU, all the data.
    "paper": {
        "00_quickstart": {"backbone": "roberta-large", "adapter_hidden_size": 768, "adapter_heads": 12,
                          "adapter_intermediate_size": 3072, "device": "cuda"},
        "01_data_alignment": {"limit": None, "min_examples": 50, "hold_out_probe": True, "alignment_docs": None,
                              "spacy_sentences": None, "arc_examples": 2},
        "02_adapter_pretraining": {
            "backbone": "roberta-large", "factual_data_dir": FACTUAL_DATA, "train_examples": None,
            "dev_examples": None, "tap_layers": [0, 11, 22], "adapter_hidden_size": 768,
            "adapter_heads": 12, "adapter_intermediate_size": 3072, "adapter_transformer_layers": 2,
            # The paper's settings per kind [ICLR App. A]: AdamW, no weight decay and no early stopping stated.
            # (The official launchers differ: factual 5e-5 / batch 256, linguistic 2e-5 / batch 128 / length 64.)
            "max_length": 64, "epochs": 5, "batch_size": 128, "learning_rate": 2e-5, "patience": None,
            "kind_overrides": {
                "factual": {"weight_decay": 0.0, "keep_feature_cache": False},
                "linguistic": {"learning_rate": 1e-5, "batch_size": 256, "epochs": 10, "max_length": 128,
                               "weight_decay": 0.0, "keep_feature_cache": False}},
            "cache_dir": FEATURE_CACHE, "storage_dtype": "bfloat16", "device": "cuda"},
        "03_finetuning": {
            "backbone": "roberta-large", "tasks": ["openentity", "semeval", "cosmosqa"], "limits": {},
            "factual_adapter": FACTUAL_ADAPTER, "linguistic_adapter": LINGUISTIC_ADAPTER,
            "stand_in_adapter": None, "seeds": [0, 1, 2], "epochs": 10, "keep_feature_cache": False,
            "device": "cuda",
            # The paper's rows (backbone, +F, +L, +F+L, backbone fine-tuned, adapters frozen), each task with the
            # paper's recipe (App. C; the official launchers where it is silent) and the official code's inputs,
            # precision and adapter dropout: kadapter.finetuning.paper_recipes.
            "trained_backbone_combinations": ["", "F", "L", "F+L"], "paper_recipe": True},
        "04_lama_probing": {
            "backbone": "roberta-large", "factual_adapter": FACTUAL_ADAPTER, "linguistic_adapter": LINGUISTIC_ADAPTER,
            "pretrained_head": True, "corpus_sentences": None, "epochs": 2, "learning_rate": 3e-3, "seeds": [0, 1, 2],
            "relations": None, "facts_per_relation": None, "feature_cache": FEATURE_CACHE, "probe_batch_size": 256,
            "device": "cuda"},
        "05_probing_demo": {"probe_set": "{run}/04_lama_probing/probe_set", "k": 10, "device": "cuda"},
    },
}

# The paper profile rehearsed on this machine: every stage, setting and hyper-parameter branch of "paper", on a
# random-weight RoBERTa written into the run folder as the hub's roberta-large (kadapter.rehearsal) and loaded by
# path in every stage; data, seeds and epochs cut so it fits a CPU. "rehearsal": RoBERTa-large's width (355M) and
# the paper adapter (47.25M); "rehearsal-narrow" (CI): 24 layers, hidden 64, the adapter scaled down alike.
REHEARSAL_BACKBONE = "{run}/backbone"
REHEARSAL_WIDTHS = {"rehearsal": "full", "rehearsal-narrow": "narrow"}


def _rehearsal_profile(width: str) -> dict[str, dict]:
    import copy

    profile = copy.deepcopy(PROFILES["paper"])
    for params in profile.values():
        if "backbone" in params:
            params["backbone"] = REHEARSAL_BACKBONE
        if "device" in params:
            params["device"] = "cpu"
    profile["00_quickstart"]["backbone"] = REHEARSAL_BACKBONE
    profile["01_data_alignment"].update(limit=25, min_examples=20, alignment_docs=40, spacy_sentences=120)
    profile["02_adapter_pretraining"].update(train_examples=48, dev_examples=16)
    profile["03_finetuning"].update(
        limits={"openentity": {"train": 12, "dev": 6, "test": 6}, "semeval": {"train": 12, "dev": 6, "test": 6},
                "cosmosqa": {"train": 4, "dev": 2, "test": 2}},
        seeds=[0], epochs=2, paper_recipe_overrides={"trained_epochs": 1})
    profile["04_lama_probing"].update(corpus_sentences=40, seeds=[0], relations=["P19", "P36", "P1412"],
                                      facts_per_relation=10)
    if width == "narrow":
        small = {"adapter_hidden_size": 64, "adapter_heads": 4, "adapter_intermediate_size": 256}
        profile["00_quickstart"].update(small)
        profile["02_adapter_pretraining"].update(small)
    return profile


PROFILES.update({name: _rehearsal_profile(width) for name, width in REHEARSAL_WIDTHS.items()})


def prepare_run(profile: str, run_dir: Path) -> None:
    """What a profile needs before its stages: the rehearsal's stand-in checkpoint (kept when already written)."""
    if profile in REHEARSAL_WIDTHS:
        from .rehearsal import write_checkpoint

        write_checkpoint(_fill(REHEARSAL_BACKBONE, run_dir), REHEARSAL_WIDTHS[profile])


def _fill(value, run_dir: Path):
    """Replace "{run}" in string parameters so a stage can point at an earlier stage's outputs."""
    if isinstance(value, str):
        return value.replace("{run}", str(run_dir))
    if isinstance(value, list):
        return [_fill(v, run_dir) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, run_dir) for k, v in value.items()}
    return value


def stage_parameters(profile: str, stage: Stage, run_dir: Path) -> dict:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    params = _fill(dict(PROFILES[profile].get(stage.name, {})), run_dir)
    params["output_dir"] = str(run_dir / stage.name)
    return params


# How long one notebook cell may run before its stage fails as hung, per profile (seconds). A stage's longest cell
# (fine-tuning every setting, pre-training both kinds) must fit: smoke stages take minutes on 2 CPU cores; the
# paper's fine-tuning of RoBERTa-large (4 backbone-trained rows x 3 seeds x 3 tasks, float32) is estimated at
# 2-6 hours on one GPU (benchmarks/README.md, paper_arithmetic.py); 7 days leaves room for a slow one. Other
# profiles get the default;
# `--cell-timeout` overrides.
# smoke: its longest cells (02's pre-training of both kinds, 03's fine-tuning table) took 459 s and 340 s on 2 cores
# shared with ~15 runnable jobs (a full smoke run, 21 min); 20 min leaves room for that and still reports a stalled
# cell as a hang within minutes.
CELL_TIMEOUTS = {"smoke": 20 * 60, "paper": 7 * 24 * 3600, "rehearsal-narrow": 30 * 60, "gemma": 2 * 3600}
DEFAULT_CELL_TIMEOUT = 24 * 3600
START_TIMEOUT = 120  # seconds for a kernel to start


def cell_timeout(profile: str) -> float:
    return CELL_TIMEOUTS.get(profile, DEFAULT_CELL_TIMEOUT)


def parse_override(text: str) -> tuple[str, str, object]:
    """``"00_quickstart.backbone=roberta-large"`` -> ``("00_quickstart", "backbone", "roberta-large")``; the value
    is read as JSON when it parses (numbers, lists, null), else kept as a string."""
    target, sep, raw = text.partition("=")
    stage, dot, name = target.partition(".")
    if not sep or not dot or not stage or not name:
        raise PipelineUsageError(f"--set {text!r}: expected STAGE.PARAMETER=VALUE, "
                                 "e.g. 00_quickstart.backbone=roberta-large")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return stage, name, value


def check_cell_timeout(seconds) -> float | None:
    """A cell timeout must be a positive, finite number of seconds (None: the profile's)."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or seconds <= 0:
        raise PipelineUsageError(f"cell timeout {seconds!r}: give a positive number of seconds (a hung cell must "
                                 "still fail); leave it out for the profile's own")
    return float(seconds)


def run_pipeline(
    profile: str | None = None,
    run_dir: str | Path | None = None,
    only: list[str] | None = None,
    resume: bool = False,
    kernel_name: str = "python3",
    overrides: dict[str, dict] | None = None,
    cell_timeout_s: float | None = None,
) -> dict:
    """Execute the stages; returns the summary (also written to `run_dir/summary.json`).

    A run folder belongs to one profile, recorded in its summary: ``resume`` (and a new call on an existing
    `run_dir`) keeps that profile and the recorded ``overrides`` (``{stage: {parameter: value}}``); asking for
    another profile is an error, and so is ``only`` naming a stage the profile does not list. ``resume`` skips
    finished stages; without it the chosen stages run again and the records of the other stages are kept.
    ``parameters.json`` records what each stage that ran was given. The summary's status is "failed" while any
    recorded stage is. Usage problems raise :class:`PipelineUsageError` before anything runs.
    """
    timeout = check_cell_timeout(cell_timeout_s)
    unknown = set(only or []) - {s.name for s in STAGES}
    if unknown:
        raise PipelineUsageError(f"unknown stage(s) {sorted(unknown)}; stages are {[s.name for s in STAGES]}")
    unknown = set(overrides or {}) - {s.name for s in STAGES}
    if unknown:
        raise PipelineUsageError(f"overrides for unknown stage(s) {sorted(unknown)}; "
                                 f"stages are {[s.name for s in STAGES]}")
    if resume and (run_dir is None or not Path(run_dir).is_dir()):
        raise PipelineUsageError(f"cannot resume {run_dir}: no such run folder")
    if run_dir is None:
        run_dir = REPO_ROOT / "runs" / f"{profile or 'smoke'}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(run_dir).resolve()  # notebooks run in notebooks/: a relative run folder would split the run
    summary_path = run_dir / "summary.json"
    # read what is recorded and check everything before the folder is created or locked
    summary = read_record(summary_path) if summary_path.is_file() else {}
    profile, stages, parameters = _plan(summary, profile, run_dir, only, overrides)
    with run_lock(run_dir):
        # the folder's records as they are now, under the lock (another pipeline may have finished since)
        summary = read_record(summary_path) if summary_path.is_file() else {}
        profile, stages, parameters = _plan(summary, profile, run_dir, only, overrides)
        return _run_stages(summary, profile, stages, parameters, run_dir, overrides, resume, kernel_name,
                           timeout or cell_timeout(profile))


def _plan(summary: dict, profile: str | None, run_dir: Path, only, overrides):
    """(profile, stages to run, their parameters), checked: nothing has run yet."""
    recorded = summary.get("profile")
    if recorded and profile and profile != recorded:
        raise PipelineUsageError(f"{run_dir} is a {recorded!r} run; it cannot continue as {profile!r} "
                                 f"(leave out --profile, or use a new --run-dir)")
    profile = recorded or profile or "smoke"
    if profile not in PROFILES:
        raise PipelineUsageError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    # a profile runs the stages it lists (the gemma profile has no fine-tuning stage); --only chooses among them
    listed = [s for s in STAGES if s.name in PROFILES[profile]]
    unlisted = [name for name in only or [] if name not in PROFILES[profile]]
    if unlisted:
        raise PipelineUsageError(f"the {profile!r} profile does not run {unlisted} (it would run with the notebook's "
                                 f"own defaults, not the profile's); its stages are {[s.name for s in listed]}")
    stages = [s for s in listed if not only or s.name in only]
    merged = _merged_overrides(summary, overrides)
    parameters = {}
    for stage in stages:
        params = stage_parameters(profile, stage, run_dir)
        if "output_dir" in merged.get(stage.name, {}):  # it is emptied before the stage runs: never a user's folder
            raise PipelineUsageError(f"--set {stage.name}.output_dir: a stage's output folder is set by the pipeline "
                                     "(<run-dir>/<stage>); choose the run folder with --run-dir")
        params.update(_fill(merged.get(stage.name, {}), run_dir))
        # refuse a misspelt or mistyped parameter now, before any stage runs
        check_parameters(NOTEBOOKS / stage.notebook, params)
        parameters[stage.name] = params
    return profile, stages, parameters


def _merged_overrides(summary: dict, overrides: dict | None) -> dict:
    merged = {stage: dict(values) for stage, values in summary.get("overrides", {}).items()}
    for stage, values in (overrides or {}).items():
        merged.setdefault(stage, {}).update(values)
    return merged


def _run_stages(summary, profile, stages, parameters, run_dir: Path, overrides, resume, kernel_name,
                timeout: float) -> dict:
    summary_path = run_dir / "summary.json"
    prepare_run(profile, run_dir)
    merged = _merged_overrides(summary, overrides)
    summary.update({"profile": profile, "run_dir": str(run_dir)})
    if merged:
        summary["overrides"] = merged
    summary.setdefault("stages", {})
    parameters_path = run_dir / "parameters.json"
    recorded_parameters = read_record(parameters_path) if parameters_path.is_file() else {}

    for stage in stages:
        previous = summary["stages"].get(stage.name, {})
        if resume and previous.get("status") == "ok":
            print(f"[pipeline] {stage.name}: already done, skipped")
            continue
        params = parameters[stage.name]
        recorded_parameters[stage.name] = params  # what runs now; finished stages keep what they ran with
        write_json(parameters_path, recorded_parameters)
        output_dir = Path(params["output_dir"])
        prepare_output(output_dir, keep=resume and bool(previous))
        print(f"[pipeline] {stage.name}: running with {params}", flush=True)
        record = _run_stage(stage, params, run_dir, kernel_name, timeout)
        summary["stages"][stage.name] = record
        write_json(summary_path, summary)
        print(f"[pipeline] {stage.name}: {record['status']} in {record['seconds']} s", flush=True)
        if record["status"] != "ok":  # the run stops: later stages depend on this one
            print(f"[pipeline] {stage.name} failed: {record['error']}", file=sys.stderr, flush=True)
            break
    return finish_run(summary, summary_path)


def _run_stage(stage: Stage, params: dict, run_dir: Path, kernel_name: str, timeout: float) -> dict:
    """Execute one stage's notebook; its record: status, seconds, the results.json it wrote or its error."""
    start = time.perf_counter()
    record = {"notebook": stage.notebook, "executed": str(run_dir / stage.notebook)}
    try:
        execute_notebook(
            NOTEBOOKS / stage.notebook, run_dir / stage.notebook, parameters=params, kernel_name=kernel_name,
            cwd=NOTEBOOKS, start_timeout=START_TIMEOUT, execution_timeout=timeout, label=stage.name,
            log=lambda line: print(line, flush=True), check=False,
        )
        record["status"] = "ok"
    except NotebookError as err:
        record.update(status="failed", error=str(err)[:4000])
    except Exception as err:  # noqa: BLE001 - papermill itself failed (e.g. the notebook cannot be read)
        record.update(status="failed", error=f"{type(err).__name__}: {err}"[:4000])
    record["seconds"] = round(time.perf_counter() - start, 1)
    results = Path(params["output_dir"]) / "results.json"
    if results.exists():
        content, problem = read_results(results)
        if problem:  # cut short: the stage's results are not usable, whatever its cells did
            record.setdefault("error", f"its results cannot be read: {problem}")
            record["status"] = "failed"
        else:
            record["results"] = content
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES),
                        help="parameter set (default: smoke; a resumed run keeps the profile it was started with)")
    parser.add_argument("--run-dir", help="where to write (default: runs/<profile>-<time>); an existing run "
                                          "folder keeps its other stages' records")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run, skipping finished stages")
    parser.add_argument("--only", nargs="+", metavar="STAGE", help="run only these stages")
    parser.add_argument("--set", action="append", default=[], metavar="STAGE.PARAMETER=VALUE", dest="overrides",
                        help="override one notebook parameter (VALUE read as JSON when it parses), e.g. "
                             "--set 00_quickstart.backbone=roberta-base; recorded in the run folder")
    parser.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                        help="fail a stage whose notebook cell runs longer than this (default: per profile)")
    args = parser.parse_args(argv)
    if args.resume and args.run_dir and Path(args.resume) != Path(args.run_dir):
        parser.error("give either --resume RUN_DIR or --run-dir, not both")
    if args.resume and not (Path(args.resume) / "summary.json").is_file():
        parser.error(f"cannot resume {args.resume}: " + ("no such run folder" if not Path(args.resume).is_dir() else
                                                         "it holds no summary.json (not a pipeline run folder)"))
    try:
        overrides: dict[str, dict] = {}
        for text in args.overrides:
            stage, name, value = parse_override(text)
            overrides.setdefault(stage, {})[name] = value
        summary = run_pipeline(args.profile, args.resume or args.run_dir, args.only, resume=bool(args.resume),
                               overrides=overrides, cell_timeout_s=args.cell_timeout)
    except (PipelineUsageError, NotebookParameterError) as err:  # nothing ran: a usage error (exit 2)
        parser.error(str(err))
    print(json.dumps({k: v for k, v in summary.items() if k != "stages"}
                     | {"stages": {n: s["status"] for n, s in summary["stages"].items()}}, indent=2))
    failed = failed_stages(summary)
    if failed:  # this run's stages or ones recorded earlier: the run folder is not a finished run
        print(f"[pipeline] the run has failed stages {failed}; see {summary['run_dir']}/summary.json",
              file=sys.stderr)
        for name in failed:
            error = (summary["stages"][name].get("error") or "no error recorded").splitlines()[0]
            print(f"  {name}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # pragma: no cover
        traceback.print_exc()
        sys.exit(130)
