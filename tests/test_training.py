"""The training loop: resume after a kill ends with the same weights, two CPU processes (gloo) equal one process with
the same global batch, several models train side by side with isolated gradients, early stopping restores the
best weights. Real MiniLM, real SemEval-2010 sentences, a tiny adapter."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kadapter import AdapterConfig, KAdapterModel
from kadapter.encoding import PadCollator, encode_relation_dataset
from kadapter.heads import RelationClassificationHead, TaskModel
from kadapter.metrics import classification_metrics
from kadapter.training import TrainConfig, Trainer, epoch_batches, shard, train, trainable_state

N_TRAIN, N_DEV, MAX_LENGTH = 48, 32, 40


class Killed(RuntimeError):
    pass


def load_data(minilm_path):
    """48 train and 32 dev SemEval sentences of the 4 most frequent relations, encoded for MiniLM."""
    from transformers import AutoTokenizer

    from data_prep.eval_sets import load_semeval2010

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    dataset, _ = load_semeval2010("train")
    top = ["Other", "Cause-Effect(e2,e1)", "Component-Whole(e1,e2)", "Member-Collection(e2,e1)"]
    dataset = dataset.filter(lambda r: r["relation"] in top)
    labels = {r: i for i, r in enumerate(top)}
    train_set, _ = encode_relation_dataset(dataset.select(range(N_TRAIN)), tokenizer, MAX_LENGTH, labels)
    dev_set, _ = encode_relation_dataset(dataset.select(range(N_TRAIN, N_TRAIN + N_DEV)), tokenizer, MAX_LENGTH,
                                         labels)
    return tokenizer, train_set, dev_set


def build_model(minilm_path, seed=0, dropout=0.1):
    from kadapter import load_backbone

    backbone, tokenizer = load_backbone(minilm_path)
    torch.manual_seed(seed)
    config = AdapterConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_transformer_layers=1,
                           dropout=dropout, attention_dropout=dropout, init_range=0.02)
    encoder = KAdapterModel(backbone, {"factual": config}, tokenizer=tokenizer)
    return TaskModel(encoder, RelationClassificationHead(384, 4, dropout=dropout))


def dev_evaluator(dev_set, collate):
    def evaluate(model):
        device = next(model.parameters()).device
        gold, pred, loss = [], [], 0.0
        for start in range(0, len(dev_set), 16):
            batch = collate([dev_set[i] for i in range(start, min(start + 16, len(dev_set)))])
            out = model(**{k: v.to(device) for k, v in batch.items()})
            loss += out.loss.item() * len(batch["labels"])
            gold += batch["labels"].tolist()
            pred += out.logits.argmax(-1).tolist()
        return {"loss": loss / len(dev_set), **classification_metrics(gold, pred)}
    return evaluate


@pytest.fixture(scope="module")
def data(minilm_path):
    return load_data(minilm_path)


def config(tmp_path, **overrides):
    return TrainConfig(**{"output_dir": str(tmp_path), "epochs": 2, "batch_size": 8, "learning_rate": 1e-3,
                          "warmup_ratio": 0.2, "seed": 7, "progress": False, "log_every": 2, **overrides})


def weights(model):
    return {k: v for k, v in trainable_state(model).items()}


def assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


# ---------------------------------------------------------------------------------------------------- basics
def test_epoch_order_depends_on_seed_and_epoch_only_and_shards_cover_the_batch():
    assert epoch_batches(10, 4, 1, 0) == epoch_batches(10, 4, 1, 0)
    assert epoch_batches(10, 4, 1, 0) != epoch_batches(10, 4, 1, 1)
    assert sorted(i for b in epoch_batches(10, 4, 1, 0) for i in b) == list(range(10))
    assert [len(b) for b in epoch_batches(10, 4, 1, 0)] == [4, 4, 2]
    batch = [5, 3, 9, 1, 7]
    assert shard(batch, 0, 2) + shard(batch, 1, 2) == batch


def test_training_learns_and_logs_metrics_as_json_lines(minilm_path, data, tmp_path):
    tokenizer, train_set, dev_set = data
    collate = PadCollator(tokenizer.pad_token_id)
    model = build_model(minilm_path)
    evaluate = dev_evaluator(train_set, collate)
    before = evaluate(model.eval())["loss"]
    summary = train(model, train_set, config(tmp_path, epochs=3), collate_fn=collate, evaluate=evaluate)
    after = evaluate(model.eval())["loss"]
    assert after < before - 0.2, f"training loss on the training set did not drop: {before:.3f} -> {after:.3f}"
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "eval"] == [0, 1, 2]
    steps = [r["step"] for r in records if r["type"] == "train"]
    assert steps == list(range(2, 19, 2))  # 48 / 8 = 6 steps per epoch, logged every 2
    lrs = [r["lr"]["model"] for r in records if r["type"] == "train"]
    assert max(lrs) == pytest.approx(1e-3, rel=0.3) and lrs[-1] < lrs[2]  # warm-up, then decay
    assert summary["steps"] == 18 and json.loads((tmp_path / "train_summary.json").read_text())["steps"] == 18
    backbone_grads = [p for p in model.encoder.backbone.parameters() if p.requires_grad]
    assert not backbone_grads


def test_resume_after_kill_ends_with_the_same_weights(minilm_path, data, tmp_path):
    tokenizer, train_set, dev_set = data
    collate = PadCollator(tokenizer.pad_token_id)
    kwargs = dict(collate_fn=collate, evaluate=dev_evaluator(dev_set, collate))

    full = build_model(minilm_path)
    train(full, train_set, config(tmp_path / "full", checkpoint_every=2, metric="accuracy"), **kwargs)

    def kill_at_step_9(trainer):  # mid-epoch 2 (6 steps per epoch), one step after the step-8 checkpoint
        if trainer.state.global_step == 9:
            raise Killed

    killed = build_model(minilm_path)
    with pytest.raises(Killed):
        train(killed, train_set, config(tmp_path / "run", checkpoint_every=2, metric="accuracy"),
              step_hook=kill_at_step_9, **kwargs)
    assert not any(p.name.startswith(".") for p in (tmp_path / "run").iterdir()), "a temp file was left behind"
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ckpt["loop"] == {"epoch": 1, "step_in_epoch": 2, "global_step": 8}

    with pytest.raises(ValueError, match="checkpoint of another run"):
        Trainer(build_model(minilm_path), train_set, config(tmp_path / "run", learning_rate=5e-4), **kwargs).fit()

    resumed = build_model(minilm_path, seed=123)  # other initial weights: the checkpoint must overwrite them
    summary = train(resumed, train_set, config(tmp_path / "run", checkpoint_every=2, metric="accuracy"), **kwargs)
    assert summary["steps"] == 12
    assert_same_weights(weights(resumed), weights(full))
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert logged == reference, "the resumed run's log differs from the uninterrupted one"
    # finished: no optimizer state or best-weights copy is left behind
    assert not list((tmp_path / "run").glob("*.pt")) and not list((tmp_path / "full").glob("*.pt"))


def test_early_stopping_keeps_the_best_epoch(minilm_path, data, tmp_path):
    tokenizer, train_set, dev_set = data
    collate = PadCollator(tokenizer.pad_token_id)
    scripted = iter([0.5, 0.7, 0.6, 0.65, 0.9])  # best at epoch 1, then two epochs without improvement
    model = build_model(minilm_path)
    snapshots = []

    def evaluate(m):
        snapshots.append(weights(m))
        return {"score": next(scripted)}

    summary = train(model, train_set, config(tmp_path, epochs=5, metric="score", patience=2),
                    collate_fn=collate, evaluate=evaluate)
    run = summary["runs"]["model"]
    assert (run["best_epoch"], run["best_metric"], run["stopped"]) == (1, 0.7, True)
    assert summary["epochs_run"] == 4 and len(snapshots) == 4
    assert_same_weights(weights(model), snapshots[1])


def test_two_models_side_by_side_train_as_if_alone(minilm_path, data, tmp_path):
    """Separate optimizers, schedulers and gradient clipping: training two models in one job (one data pass)
    gives each the weights it gets alone. Dropout off, so that no random stream is shared."""
    tokenizer, train_set, _ = data
    collate = PadCollator(tokenizer.pad_token_id)
    alone = {}
    for name, seed in (("a", 0), ("b", 1)):
        model = build_model(minilm_path, seed=seed, dropout=0.0)
        train(model, train_set, config(tmp_path / name), collate_fn=collate)
        alone[name] = weights(model)
    together = {"a": build_model(minilm_path, seed=0, dropout=0.0), "b": build_model(minilm_path, seed=1, dropout=0.0)}
    train(together, train_set, config(tmp_path / "both"), collate_fn=collate)
    for name in together:
        assert_same_weights(weights(together[name]), alone[name], atol=1e-6)


def test_bad_inputs_raise_clear_errors(minilm_path, data, tmp_path):
    tokenizer, train_set, _ = data
    collate = PadCollator(tokenizer.pad_token_id)
    model = build_model(minilm_path)
    with pytest.raises(ValueError, match="training set is empty"):
        Trainer(model, train_set.select([]), config(tmp_path), collate_fn=collate)
    with pytest.raises(ValueError, match="patience.*needs a dev metric"):
        TrainConfig(output_dir=str(tmp_path), patience=2)
    with pytest.raises(ValueError, match="no trainable parameter"):
        Trainer(model.encoder.backbone, train_set, config(tmp_path), collate_fn=collate)


# ------------------------------------------------------------------------------------------- data parallel
def _ddp_worker(out_dir: str, minilm_path: str) -> None:
    """One of two gloo processes (run as a subprocess with RANK/WORLD_SIZE set)."""
    torch.set_num_threads(1)
    tokenizer, train_set, _ = load_data(minilm_path)
    model = build_model(minilm_path, dropout=0.0)
    trainer = Trainer(model, train_set, config(Path(out_dir) / "ddp", cpu=True),
                      collate_fn=PadCollator(tokenizer.pad_token_id))
    assert trainer.accelerator.num_processes == 2, trainer.accelerator.state
    trainer.fit()
    if trainer.is_main:
        torch.save(weights(trainer.unwrapped("model")), Path(out_dir) / "ddp_weights.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_match_one_process_with_the_same_global_batch(minilm_path, data, tmp_path):
    tokenizer, train_set, _ = data
    single = build_model(minilm_path, dropout=0.0)
    train(single, train_set, config(tmp_path / "single", cpu=True), collate_fn=PadCollator(tokenizer.pad_token_id))

    port, tests_dir = _free_port(), str(Path(__file__).parent)
    code = (f"import sys; sys.path.insert(0, {tests_dir!r}); import test_training as t; "
            f"t._ddp_worker({str(tmp_path)!r}, {minilm_path!r})")
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outputs)
    ddp = torch.load(tmp_path / "ddp_weights.pt")
    assert_same_weights(ddp, weights(single), atol=2e-5)
    # the weights really moved, so the comparison means something
    start = weights(build_model(minilm_path, dropout=0.0))
    assert max((ddp[k] - start[k]).abs().max().item() for k in ddp) > 1e-3
