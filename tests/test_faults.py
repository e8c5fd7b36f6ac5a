"""The adversarial cases of issue 14, each reproduced on real files copied to a temporary folder and broken there.

Every test asserts the clear error (file, and line or field where there is one), the counted skip, or the
recomputation — never a silent wrong result, a bare library error or a hang. Names that are new with the fixes are
imported inside the tests, so each test fails on its own where the fix is missing.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from data_prep.report import DataFormatError
from training_fixtures import BagOfWords, Killed, collate

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------- loaders: cases 3, 7, 12
def _head_lines(source: Path, target: Path, n: int, *, until_blank: bool = False) -> Path:
    """The first ``n`` lines of a real file (continued to the next blank line when ``until_blank``)."""
    lines = source.read_bytes().split(b"\n")
    end = n
    while until_blank and end < len(lines) and lines[end].strip():
        end += 1
    target.write_bytes(b"\n".join(lines[:end]) + b"\n")
    return target


def _loaders(data_root: Path, tmp: Path):
    """(name, copy of a real file, reader) for every data loader of the project."""
    from data_prep.dependency import read_conllu
    from data_prep.eval_sets import read_cosmosqa, read_fewrel, read_openentity, read_semeval2010, read_tacred
    from data_prep.factual import load_redocred
    from data_prep.lama import load_relations

    def copy(*parts):
        folder = tmp / parts[0]
        folder.mkdir(exist_ok=True)
        return Path(shutil.copy(data_root.joinpath(*parts), folder / parts[-1]))

    return [
        ("lama", copy("lama", "relations.jsonl"), load_relations),
        ("openentity", copy("entity_typing_openentity", "ernie_format", "dev.json"), read_openentity),
        ("tacred", copy("tacred_sample", "dev.json"), read_tacred),
        ("semeval", _head_lines(data_root / "semeval2010_task8" / "SemEval2010_task8_training" / "TRAIN_FILE.TXT",
                                tmp / "TRAIN_FILE.TXT", 40), read_semeval2010),
        ("conllu", _head_lines(data_root / "ud_english_ewt" / "en_ewt-ud-dev.conllu", tmp / "dev.conllu", 60,
                               until_blank=True), read_conllu),
        ("fewrel", copy("fewrel", "val_pubmed.json"), read_fewrel),
        ("cosmosqa", _head_lines(data_root / "qa_cosmosqa" / "valid.csv", tmp / "valid.csv", 20), read_cosmosqa),
        ("redocred", copy("redocred", "dev_revised.json"),
         lambda path: load_redocred(path=path, rel_info_path=data_root / "redocred" / "rel_info.json")),
    ]


LOADERS = ["lama", "openentity", "tacred", "semeval", "conllu", "fewrel", "cosmosqa", "redocred"]


def _loader(name, data_root, tmp_path):
    return next(entry for entry in _loaders(data_root, tmp_path) if entry[0] == name)


@pytest.mark.parametrize("name", LOADERS)
def test_every_loader_reads_its_real_file_copy(name, data_root, tmp_path):
    """The copies the broken-file tests start from are valid: the breakage is what the errors are about."""
    _, path, read = _loader(name, data_root, tmp_path)
    result = read(path)
    records = result[0] if isinstance(result, tuple) else result
    assert len(records) > 0


@pytest.mark.parametrize("name", LOADERS)
@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_case07_an_empty_file_is_an_error_naming_it_in_every_loader(name, content, data_root, tmp_path):
    _, path, read = _loader(name, data_root, tmp_path)
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match="empty file") as error:
        read(path)
    assert error.value.path == str(path)


@pytest.mark.parametrize("name", LOADERS)
def test_case12_a_non_utf8_byte_is_an_error_naming_file_and_line_in_every_loader(name, data_root, tmp_path):
    _, path, read = _loader(name, data_root, tmp_path)
    data = path.read_bytes()
    newlines = [i for i, b in enumerate(data) if b == 0x0A]
    line = min(5, len(newlines))  # break line 6, or the last line of a one-line file
    start = newlines[line - 1] + 1 if line else 0
    if start >= len(data) - 2:  # one-line file ending in a newline
        line, start = 0, 0
    offset = start + 3
    path.write_bytes(data[:offset] + b"\xff" + data[offset + 1:])
    with pytest.raises(DataFormatError, match="not UTF-8") as error:
        read(path)
    assert error.value.path == str(path) and error.value.line == line + 1
    assert "column 4" in str(error.value)


def test_case03_conllu_trees_with_a_cycle_or_two_roots_are_skipped_and_counted(data_root, tmp_path):
    from data_prep.dependency import read_conllu

    source = _head_lines(data_root / "ud_english_ewt" / "en_ewt-ud-dev.conllu", tmp_path / "ok.conllu", 60,
                         until_blank=True)
    good, good_report = read_conllu(source)
    assert good_report.total_skipped == 0
    blocks = source.read_text().strip("\n").split("\n\n")
    assert len(blocks) >= 3

    def set_heads(block: str, heads: dict[int, int]) -> str:
        out = []
        for line in block.split("\n"):
            cols = line.split("\t")
            if len(cols) == 10 and cols[0].isdigit() and int(cols[0]) in heads:
                cols[6] = str(heads[int(cols[0])])
            out.append("\t".join(cols))
        return "\n".join(out)

    # sentence 1 ("From the AP comes this story :"): AP -> story -> AP, a cycle beside the root; sentence 2: a
    # second root; sentence 3: its root hangs under another word (heads 2,3,2,3-like: a cycle and no root)
    root_of = {n: int(line.split("\t")[0]) for n, block in enumerate(blocks)
               for line in block.split("\n") if line.split("\t")[6:7] == ["0"]}
    blocks[0] = set_heads(blocks[0], {3: 6, 6: 3})
    blocks[1] = set_heads(blocks[1], {1: 0})
    blocks[2] = set_heads(blocks[2], {root_of[2]: 1 if root_of[2] != 1 else 2})
    broken = tmp_path / "broken.conllu"
    broken.write_text("\n\n".join(blocks) + "\n\n")
    data, report = read_conllu(broken)
    assert len(data) == len(good) - 3 and report.kept == len(good) - 3
    assert report.skipped == {"not a tree: head cycle": 1, "not a tree: several roots": 1, "not a tree: no root": 1}
    sent_ids = [line.split("= ", 1)[1] for b in blocks[:3] for line in b.split("\n") if line.startswith("# sent_id")]
    cycle = report.examples["not a tree: head cycle"][0]
    roots = report.examples["not a tree: several roots"][0]
    assert cycle.startswith("broken.conllu:5 ") and sent_ids[0] in cycle  # line 5: the sentence's first word
    assert roots.startswith(f"broken.conllu:{blocks[0].count(chr(10)) + 2 + 4} ") and sent_ids[1] in roots
    assert sent_ids[2] in report.examples["not a tree: no root"][0]
    assert not set(sent_ids) & set(data["id"])


# ----------------------------------------------------------------------- adapters and models: cases 6 and 13
TINY = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_transformer_layers=1)


@pytest.fixture(scope="module")
def minilm(minilm_path):
    from kadapter import AdapterConfig, KAdapterModel

    torch.manual_seed(0)
    return KAdapterModel.from_backbone(minilm_path, adapters={"factual": AdapterConfig(**TINY)})


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def _saved_adapter(minilm, tmp_path) -> Path:
    return minilm.adapters["factual"].save_pretrained(tmp_path / "factual")


@pytest.mark.parametrize("field, value", [("tap_layers", [0, 3, 4]), ("num_attention_heads", 4),
                                          ("hidden_act", "relu"), ("faithful_padding", True),
                                          ("layer_norm_eps", 1e-12), ("skip_interval", 1)])
def test_case06_an_edited_config_field_that_changes_the_computation_is_refused(minilm, tmp_path, field, value):
    from kadapter import KnowledgeAdapter

    directory = _saved_adapter(minilm, tmp_path)
    config_path = directory / "adapter_config.json"
    payload = json.loads(config_path.read_text())
    assert payload["adapter"][field] != value
    payload["adapter"][field] = value
    config_path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=f"field '{field}'") as error:
        KnowledgeAdapter.from_pretrained(directory)
    assert str(config_path) in str(error.value) and "adapter.safetensors" in str(error.value)


def test_case06_fields_that_only_act_in_training_may_change(minilm, tmp_path):
    from kadapter import KnowledgeAdapter

    directory = _saved_adapter(minilm, tmp_path)
    config_path = directory / "adapter_config.json"
    payload = json.loads(config_path.read_text())
    payload["adapter"]["dropout"] = 0.3
    config_path.write_text(json.dumps(payload))
    loaded = KnowledgeAdapter.from_pretrained(directory)
    assert loaded.config.dropout == 0.3
    saved = minilm.adapters["factual"].state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in loaded.state_dict().items())


def test_case13_a_truncated_adapter_is_an_error_naming_the_file(minilm, tmp_path):
    from kadapter import KnowledgeAdapter
    from kadapter.safe_files import DamagedFileError

    directory = _saved_adapter(minilm, tmp_path)
    weights, config_path = directory / "adapter.safetensors", directory / "adapter_config.json"
    original_weights, original_config = weights.read_bytes(), config_path.read_text()
    _truncate(weights)
    with pytest.raises(DamagedFileError, match="truncated or damaged") as error:
        KnowledgeAdapter.from_pretrained(directory)
    assert error.value.path == str(weights)
    weights.write_bytes(original_weights)

    _truncate(config_path)
    with pytest.raises(DamagedFileError, match="not valid JSON at line") as error:
        KnowledgeAdapter.from_pretrained(directory)
    assert error.value.path == str(config_path)

    payload = json.loads(original_config)
    del payload["backbone"]
    config_path.write_text(json.dumps(payload))
    with pytest.raises(DamagedFileError, match="field 'backbone' missing") as error:
        KnowledgeAdapter.from_pretrained(directory)
    assert error.value.path == str(config_path)


def test_case13_a_truncated_fusion_is_an_error_naming_the_file(minilm, tmp_path):
    from kadapter import KAdapterModel
    from kadapter.safe_files import DamagedFileError

    directory = minilm.save_pretrained(tmp_path / "model")
    fusion = next(directory.glob("fusion*.safetensors"))
    _truncate(fusion)
    with pytest.raises(DamagedFileError) as error:
        KAdapterModel.from_pretrained(directory, backbone=minilm.backbone, tokenizer=minilm.tokenizer)
    assert error.value.path == str(fusion)


# -------------------------------------------------------------------------- feature cache: cases 9 and 13
@pytest.fixture(scope="module")
def encoded_sample(minilm, data_root):
    """The real TACRED-format sample's sentences, encoded by MiniLM's tokenizer."""
    from datasets import Dataset

    from data_prep.eval_sets import read_tacred

    records, _ = read_tacred(data_root / "tacred_sample" / "train.json")
    encoded = minilm.tokenizer([" ".join(t) for t in records["tokens"]], truncation=True, max_length=32)
    return Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})


def _build(minilm, data, root):
    from kadapter.cache import FeatureCache

    return FeatureCache.build(minilm, data, tokenizer=minilm.tokenizer, max_length=32, taps=(0, 2), root=root,
                              storage_dtype="float32", batch_size=8, progress=False)


def test_case09_a_killed_builds_temp_folder_is_removed_and_a_live_ones_kept(minilm, encoded_sample, tmp_path):
    root = tmp_path / "cache"
    first = _build(minilm, encoded_sample, root)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = root / f".{first.path.name}.tmp-{dead.pid}"
        running = root / f".{first.path.name}.tmp-{alive.pid}"
        for folder in (stale, running):
            shutil.copytree(first.path, folder)
            (folder / "meta.json").unlink()  # killed before the end
        with pytest.warns(UserWarning, match=f"removed {stale}"):
            again = _build(minilm, encoded_sample, root)
        assert again.hit and not stale.exists() and running.is_dir()
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.parametrize("damage", ["missing meta.json", "truncated array", "truncated meta.json"])
def test_case09_13_a_damaged_cache_is_named_and_rebuilt(minilm, encoded_sample, tmp_path, damage):
    from kadapter.cache import FeatureCache
    from kadapter.safe_files import DamagedFileError

    root = tmp_path / "cache"
    first = _build(minilm, encoded_sample, root)
    want = first.features(range(len(first))).hidden_states[2].clone()
    broken = {"missing meta.json": first.path / "meta.json", "truncated array": first.path / "hidden_2.npy",
              "truncated meta.json": first.path / "meta.json"}[damage]
    if damage == "missing meta.json":
        broken.unlink()
    else:
        _truncate(broken, 0.7)
        with pytest.raises(DamagedFileError) as error:
            FeatureCache(first.path)
        assert error.value.path == str(broken)
    with pytest.warns(UserWarning, match=f"feature cache {first.path} is damaged"):
        rebuilt = _build(minilm, encoded_sample, root)
    assert not rebuilt.hit and rebuilt.path == first.path
    assert torch.equal(rebuilt.features(range(len(rebuilt))).hidden_states[2], want)
    assert _build(minilm, encoded_sample, root).hit


# ------------------------------------------------------------------------------- training: cases 2, 10, 13
@pytest.fixture(scope="module")
def relation_data(minilm, data_root):
    """Two same-size, same-config training sets of different real examples (TACRED-format sample, train / dev)."""
    from datasets import Dataset

    from data_prep.eval_sets import read_tacred

    splits = {s: read_tacred(data_root / "tacred_sample" / f"{s}.json")[0] for s in ("train", "dev")}
    labels = sorted({r for d in splits.values() for r in d["relation"]})
    out = {}
    for split, records in splits.items():
        ids = minilm.tokenizer([" ".join(t) for t in records["tokens"]], truncation=True, max_length=32)["input_ids"]
        out[split] = Dataset.from_dict({"input_ids": ids[:16], "label": [labels.index(r) for r in
                                                                           records["relation"][:16]]})
    return out, len(minilm.tokenizer), len(labels)


def _fit(relation_data, output_dir, split="train", kill_at=None):
    from kadapter.training import TrainConfig, train

    data, vocab, labels = relation_data
    torch.manual_seed(0)
    model = BagOfWords(vocab, labels)

    def hook(trainer):
        if kill_at is not None and trainer.state.global_step == kill_at:
            raise Killed

    config = TrainConfig(output_dir=str(output_dir), epochs=2, batch_size=4, learning_rate=1e-2, cpu=True,
                         progress=False, checkpoint_every=2, log_every=1)
    return train(model, data[split], config, collate_fn=collate, step_hook=hook), model


def test_case02_resume_on_other_data_is_refused(relation_data, tmp_path):
    with pytest.raises(Killed):
        _fit(relation_data, tmp_path / "run", kill_at=5)
    with pytest.raises(ValueError, match="training data") as error:
        _fit(relation_data, tmp_path / "run", split="dev")  # same size and config, other examples
    assert str(tmp_path / "run" / "checkpoint.pt") in str(error.value)
    summary, _ = _fit(relation_data, tmp_path / "run")  # the same data resumes
    assert summary["steps"] == 8


def test_case10_a_half_written_last_metrics_line_is_dropped_on_resume(relation_data, tmp_path):
    _, reference = _fit(relation_data, tmp_path / "full")
    with pytest.raises(Killed):
        _fit(relation_data, tmp_path / "run", kill_at=5)
    metrics = tmp_path / "run" / "metrics.jsonl"
    with open(metrics, "a") as handle:
        handle.write('{"type": "train", "epoch": 1, "st')  # killed mid-write
    with pytest.warns(UserWarning, match=f"{metrics}, line 6: dropped a half-written last record"):
        summary, resumed = _fit(relation_data, tmp_path / "run")
    assert summary["steps"] == 8
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), reference.state_dict().values()))
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_case10_a_damaged_metrics_line_in_the_middle_is_an_error_naming_file_and_line(relation_data, tmp_path):
    from kadapter.safe_files import DamagedFileError

    with pytest.raises(Killed):
        _fit(relation_data, tmp_path / "run", kill_at=5)
    metrics = tmp_path / "run" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    lines[1] = lines[1][:20]
    metrics.write_text("\n".join(lines) + "\n")
    with pytest.raises(DamagedFileError, match="line 2") as error:
        _fit(relation_data, tmp_path / "run")
    assert error.value.path == str(metrics)


def test_case13_a_truncated_checkpoint_is_an_error_naming_the_file(relation_data, tmp_path):
    from kadapter.safe_files import DamagedFileError

    with pytest.raises(Killed):
        _fit(relation_data, tmp_path / "run", kill_at=5)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    _truncate(checkpoint)
    with pytest.raises(DamagedFileError) as error:
        _fit(relation_data, tmp_path / "run")
    assert error.value.path == str(checkpoint)


# ------------------------------------------------------------------ notebooks and the pipeline: cases 4, 5, 8, 11
def _notebook(path: Path, parameters: str, *cells: str) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(parameters, metadata={"tags": ["parameters"]}),
                             *[new_code_cell(c) for c in cells]])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


@pytest.mark.notebook
@pytest.mark.parametrize("cell, expected", [
    ("import time\ntime.sleep(120)", "ran longer than the execution timeout of 3 s"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "the kernel died"),
    ("import os\nos._exit(1)", "the kernel died"),
])
def test_case11_a_silent_or_dead_kernel_fails_within_the_timeout_naming_notebook_and_cell(tmp_path, cell, expected):
    from kadapter.notebook_run import NotebookTimeout, execute_notebook

    notebook = _notebook(tmp_path / "hang.ipynb", "n = 1", "print('before', n)", cell, "print('never')")
    lines = []
    started = time.perf_counter()
    with pytest.raises(NotebookTimeout, match=expected) as error:
        execute_notebook(notebook, tmp_path / "out.ipynb", {"n": 2}, start_timeout=60, execution_timeout=3,
                         log=lines.append)
    assert time.perf_counter() - started < 90  # kernel start (slow on a loaded machine) + 3 s, not 120 s
    assert error.value.notebook.endswith("out.ipynb") and error.value.cell == "4/5"  # papermill adds a cell
    assert str(error.value).startswith(f"out.ipynb, cell 4/5 ({cell.splitlines()[0]})")
    assert "[hang] cell 4/5" in "\n".join(lines) and "[hang]   before 2" in lines


@pytest.mark.notebook
def test_a_failing_cell_raises_the_notebooks_own_exception_not_papermills(tmp_path):
    from kadapter.notebook_run import NotebookError, execute_notebook

    notebook = _notebook(tmp_path / "fails.ipynb", "name = 'x'",
                         "def load(name):\n    raise OSError(f'cannot load the backbone {name!r}')",
                         "load(name)")
    with pytest.raises(NotebookError) as error:
        execute_notebook(notebook, tmp_path / "out.ipynb", {"name": "org/model"}, execution_timeout=60, log=None)
    assert error.value.ename == "OSError" and error.value.evalue == "cannot load the backbone 'org/model'"
    assert str(error.value).splitlines()[0] == \
        "out.ipynb, cell 4/4 (load(name)): OSError: cannot load the backbone 'org/model'"
    assert any("in load(name)" in line for line in error.value.traceback)


def test_case11_every_notebook_execution_goes_through_the_runner_with_timeouts():
    """No direct papermill call is left in the tests or the library: the runner sets both timeouts."""
    from kadapter.notebook_run import execute_notebook

    import inspect
    import re

    call = re.compile(r"\b(papermill|pm)\s*\.\s*execute_notebook\(")
    direct = [f"{path.relative_to(ROOT)}:{n}" for folder in ("tests", "kadapter", "benchmarks")
              for path in (ROOT / folder).glob("*.py") if path.name != "notebook_run.py"
              for n, line in enumerate(path.read_text().splitlines(), 1) if call.search(line)]
    assert direct == []

    defaults = inspect.signature(execute_notebook).parameters
    assert defaults["start_timeout"].default and defaults["execution_timeout"].default


@pytest.mark.parametrize("parameters, message", [
    ({"adapter_kind": ["factual"]}, "unknown parameter 'adapter_kind'; did you mean 'adapter_kinds'?"),
    ({"adapter_hiden_size": 64}, "unknown parameter 'adapter_hiden_size'; did you mean 'adapter_hidden_size'?"),
    ({"adapter_kinds": "factual"}, "parameter 'adapter_kinds': expected list"),
    ({"epochs": "2"}, "parameter 'epochs': expected int"),
])
def test_case05_misspelt_or_mistyped_notebook_parameters_fail_before_execution(tmp_path, parameters, message):
    from kadapter.notebook_run import NotebookParameterError, execute_notebook

    started = time.perf_counter()
    with pytest.raises(NotebookParameterError, match=message.replace("?", r"\?")) as error:
        execute_notebook(ROOT / "notebooks" / "02_adapter_pretraining.ipynb", tmp_path / "out.ipynb", parameters)
    assert str(error.value).startswith("02_adapter_pretraining.ipynb: ")
    assert not (tmp_path / "out.ipynb").exists() and time.perf_counter() - started < 10  # no kernel started


def test_case05_the_pipeline_refuses_a_misspelt_override_before_running_anything(tmp_path, capsys):
    from kadapter import pipeline

    with pytest.raises(SystemExit):
        pipeline.main(["--run-dir", str(tmp_path / "run"), "--set", "02_adapter_pretraining.adapter_kind=factual"])
    assert "did you mean 'adapter_kinds'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.fixture
def tiny_pipeline(tmp_path, monkeypatch):
    """The pipeline's run loop over two tiny notebooks and two profiles (fast stand-ins for the real stages)."""
    from kadapter import pipeline

    folder = tmp_path / "notebooks"
    folder.mkdir()
    body = ("import json, pathlib\n"
            "assert not (stop_file and pathlib.Path(stop_file).exists()), 'stopped'\n"
            "pathlib.Path(output_dir, 'results.json').write_text(json.dumps({'n': n}))")
    for name in ("a", "b"):
        _notebook(folder / f"{name}.ipynb", "n = 0\nstop_file = ''\noutput_dir = ''", body)
    monkeypatch.setattr(pipeline, "NOTEBOOKS", folder)
    monkeypatch.setattr(pipeline, "STAGES", [pipeline.Stage("a", "a.ipynb"), pipeline.Stage("b", "b.ipynb")])
    monkeypatch.setattr(pipeline, "PROFILES", {
        "smoke": {"a": {"n": 1}, "b": {"n": 1}},
        "paper": {"a": {"n": 2}, "b": {"n": 2, "stop_file": "{run}/stop"}},
    })
    return pipeline, tmp_path / "run"


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.notebook
def test_case04_resume_keeps_the_profile_the_run_was_started_with(tiny_pipeline, capsys):
    pipeline, run = tiny_pipeline
    run.mkdir()
    (run / "stop").touch()
    assert pipeline.main(["--profile", "paper", "--run-dir", str(run)]) == 1  # b fails: the run stopped
    assert "AssertionError: stopped" in capsys.readouterr().err
    (run / "stop").unlink()

    with pytest.raises(SystemExit):  # another profile on resume is refused, and nothing is rewritten
        pipeline.main(["--resume", str(run), "--profile", "smoke"])
    assert "is a 'paper' run" in capsys.readouterr().err
    assert pipeline.main(["--resume", str(run)]) == 0  # no --profile: the recorded one
    summary = _json(run / "summary.json")
    assert summary["profile"] == "paper" and summary["stages"]["b"]["results"] == {"n": 2}
    parameters = _json(run / "parameters.json")
    assert parameters["a"]["n"] == 2 and parameters["b"]["n"] == 2

    # resuming with --only a finished stage runs nothing and rewrites no parameter that did not run
    assert pipeline.main(["--resume", str(run), "--profile", "paper", "--only", "a"]) == 0
    assert _json(run / "parameters.json") == parameters
    assert _json(run / "summary.json")["stages"] == summary["stages"]


@pytest.mark.notebook
def test_case08_run_dir_on_an_existing_run_keeps_the_finished_stages_records(tiny_pipeline):
    pipeline, run = tiny_pipeline
    assert pipeline.main(["--profile", "smoke", "--run-dir", str(run)]) == 0
    first = _json(run / "summary.json")["stages"]
    assert pipeline.main(["--run-dir", str(run), "--only", "b"]) == 0  # b again, without --resume
    summary = _json(run / "summary.json")
    assert set(summary["stages"]) == {"a", "b"} and summary["stages"]["a"] == first["a"]
    assert set(_json(run / "parameters.json")) == {"a", "b"}


def test_case08_resume_of_a_folder_that_does_not_exist_is_an_error(tmp_path, capsys):
    from kadapter import pipeline

    with pytest.raises(SystemExit):
        pipeline.main(["--resume", str(tmp_path / "no-such-run")])
    assert "no such run folder" in capsys.readouterr().err
    assert not (tmp_path / "no-such-run").exists()


@pytest.mark.notebook
def test_issue11_a_backbone_that_cannot_load_fails_with_its_real_error_in_terminal_and_summary(tmp_path):
    """`--profile smoke` with the quickstart's backbone set to a hub name that cannot be downloaded offline."""
    from kadapter import pipeline

    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(pipeline.__file__).parent.parent), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kadapter.pipeline", "--profile", "smoke", "--run-dir", str(run),
                           "--set", "00_quickstart.backbone=kadapter-tests/no-such-model"],
                          capture_output=True, text=True, env=env, timeout=600)
    seconds = time.perf_counter() - started
    assert done.returncode == 1
    expected = "OSError: cannot load the backbone 'kadapter-tests/no-such-model'"
    assert expected in done.stderr and "00_quickstart.ipynb, cell" in done.stderr
    assert "Kernel is running over TCP" not in done.stderr + done.stdout
    assert "[00_quickstart] cell 1/" in done.stdout  # progress while the stage runs
    stage = _json(run / "summary.json")["stages"]["00_quickstart"]
    assert stage["status"] == "failed" and expected in stage["error"]
    assert stage["error"].startswith("00_quickstart.ipynb, cell")  # not a cut huggingface_hub traceback
    assert "01_data_alignment" not in _json(run / "summary.json")["stages"]
    assert stage["seconds"] < 120, seconds  # the first cells, not a whole stage
