"""The paper path, rehearsed end to end at reduced width: `python -m kadapter.pipeline --profile rehearsal-narrow`
in a fresh process. A random-weight RoBERTa with RoBERTa-large's depth (24 layers, taps 0/11/22) and vocabulary,
hidden size 64, written as the hub's roberta-large (no pooler, byte-level BPE tokenizer) and loaded by path in
every stage's own kernel; every setting and hyper-parameter branch of --profile paper, on a few dozen examples."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kadapter.pipeline import PROFILES, STAGES

REPO = Path(__file__).resolve().parent.parent


def test_rehearsal_profiles_are_the_paper_profile_with_data_cut():
    paper = PROFILES["paper"]
    for name in ("rehearsal", "rehearsal-narrow"):
        profile = PROFILES[name]
        assert set(profile) == set(paper)
        for stage, params in profile.items():
            # every parameter the paper profile sets is set here too (same branches), only sizes/devices differ
            assert set(paper[stage]) <= set(params), stage
            if "backbone" in params:
                assert params["backbone"] == "{run}/backbone"
        pre = profile["02_adapter_pretraining"]
        for key in ("kind_overrides", "learning_rate", "batch_size", "epochs", "max_length", "patience",
                    "storage_dtype", "tap_layers", "adapter_transformer_layers"):
            assert pre[key] == paper["02_adapter_pretraining"][key], key
        fine = profile["03_finetuning"]
        for key in ("trained_backbone_combinations", "paper_recipe", "tasks"):
            assert fine[key] == paper["03_finetuning"][key], key
        assert profile["04_lama_probing"]["pretrained_head"] is True
    assert PROFILES["rehearsal"]["02_adapter_pretraining"]["adapter_hidden_size"] == 768


def test_paper_profile_pretraining_settings_are_the_papers():
    pre = PROFILES["paper"]["02_adapter_pretraining"]
    overrides = {kind: {k: v for k, v in values.items() if k != "keep_feature_cache"}  # disk, not a setting
                 for kind, values in pre["kind_overrides"].items()}
    factual = {**{k: pre[k] for k in ("learning_rate", "batch_size", "epochs", "max_length")}, **overrides["factual"]}
    linguistic = {**factual, **overrides["linguistic"]}
    assert factual == {"learning_rate": 2e-5, "batch_size": 128, "epochs": 5, "max_length": 64, "weight_decay": 0.0}
    assert linguistic == {"learning_rate": 1e-5, "batch_size": 256, "epochs": 10, "max_length": 128,
                          "weight_decay": 0.0}
    assert pre["patience"] is None and pre["tap_layers"] == [0, 11, 22]


@pytest.mark.rehearsal
@pytest.mark.notebook
def test_narrow_rehearsal_runs_every_stage(tmp_path):
    # 50 min: the paper profile's four backbone-trained rows per task (+L added) made it 2,143 s on 2 cores at load
    # 18-26 (03_finetuning 1,131 s); 1,800 s no longer fits a loaded machine
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "KADAPTER_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "kadapter.pipeline", "--profile", "rehearsal-narrow",
                           "--run-dir", str(run_dir)], env=env, capture_output=True, text=True, timeout=3000)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert summary["status"] == "ok"
    assert [s.name for s in STAGES] == list(summary["stages"])
    assert all(s["status"] == "ok" for s in summary["stages"].values())

    # the checkpoint in the run folder is laid out as the hub's: no pooler; every stage loaded it by path
    backbone = run_dir / "backbone"
    config = json.loads((backbone / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (24, 64, 50265)
    params = json.loads((run_dir / "parameters.json").read_text())
    assert all(p.get("backbone") == str(backbone) for p in params.values() if "backbone" in p)

    # pre-training: both kinds, per-kind settings, the adapters load in the later stages' processes
    pre = summary["stages"]["02_adapter_pretraining"]["results"]
    assert set(pre) == {"factual", "linguistic"}
    for kind in pre:
        saved = json.loads((Path(pre[kind]["adapter_dir"]) / "adapter_config.json").read_text())
        assert saved["adapter"]["tap_layers"] == [0, 11, 22]
    # fine-tuning: the backbone-trained rows of the paper recipe, on every task
    tasks = summary["stages"]["03_finetuning"]["results"]["tasks"]
    assert set(tasks) == {"openentity", "semeval", "cosmosqa"}
    for task, result in tasks.items():
        trained = [r["setting"] for r in result["summary"] if r["setting"].endswith("| backbone trained")]
        assert trained == ["backbone | backbone trained", "+F | backbone trained", "+L | backbone trained",
                           "+F+L | backbone trained"], task
        # the paper's recipe for the task, the official inputs
        config = json.loads((run_dir / "03_finetuning" / task / "results.json").read_text())["config"]
        assert config["input_format"] == "official" and config["trained_backbone_overrides"]
        assert not result["adapters_untrained"]
    # the paper profile frees its feature caches once a stage is done with them (disk): 02's per kind, 03's per task
    for kind in ("factual", "linguistic"):
        kind_results = json.loads((run_dir / "02_adapter_pretraining" / kind / "results.json").read_text())
        assert all(not Path(c["path"]).exists() for c in kind_results["cache"].values())
    assert not list((tmp_path / "cache").rglob("meta.json"))
    # no optimizer state or per-epoch copies left in the run folder
    assert not list(run_dir.glob("03_finetuning/**/*.pt")) and not list(run_dir.glob("02_adapter_pretraining/**/*.pt"))
    # probing on the RoBERTa tokenizer, with the checkpoint's own MLM head
    probe = summary["stages"]["04_lama_probing"]["results"]
    assert probe["backbone"]["model_type"] == "roberta" and probe["pretrained_head_note"] is None
    assert probe["facts"]["total"] > 0
    assert "backbone (own MLM head)" in {row["model"] for row in probe["summary"]}
