"""Progress output: plain throttled lines that say what runs (KADAPTER_PROGRESS=plain, or no live front end), a live
tqdm bar where one is shown, and the trainer's metric lines naming the run. Each case runs in a fresh process, the
way a user's script or the pipeline's kernel meets it."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_python(code: str, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    for key, value in env.items():
        if value is None:
            full_env.pop(key)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=120)


LOOP = """
    import time
    from kadapter.progress import progress_bar, progress_log
    progress_log("stage: counting")
    with progress_bar(total=6, desc="count · setting A") as bar:
        for i in range(6):
            time.sleep(0.05)
            bar.update(1)
            bar.set_postfix({"loss": 1.0 / (i + 1)})
    for _ in progress_bar(range(3), desc="short loop"):
        pass
"""


def test_plain_lines_say_what_runs_and_are_throttled(tmp_path):
    out = run_python(LOOP, tmp_path, KADAPTER_PROGRESS="plain", KADAPTER_PROGRESS_INTERVAL="0.1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "stage: counting"
    counting = [line for line in lines if line.startswith("[count · setting A]")]
    # 6 updates 50 ms apart, at most one line per 100 ms: some intermediate lines, fewer than the updates
    assert 2 <= len(counting) <= 5, lines
    assert counting[-1].startswith("[count · setting A] 6/6 (100%) done in ") and counting[-1].endswith("loss=0.1667")
    assert [line for line in lines if line.startswith("[short loop]")] == [lines[-1]]
    assert lines[-1].startswith("[short loop] 3/3 (100%) done in ")
    assert "\r" not in out.stdout and out.stderr == ""  # no bar drawing anywhere


def test_no_live_front_end_means_plain_and_bar_mode_is_tqdm(tmp_path):
    # stdout/stderr are pipes here, as in a log file or CI: no bar drawn, the plain lines instead
    out = run_python(LOOP, tmp_path, KADAPTER_PROGRESS=None)
    assert out.returncode == 0, out.stderr
    assert "[short loop] 3/3 (100%) done in" in out.stdout and "it/s" not in out.stderr
    bar = run_python(LOOP, tmp_path, KADAPTER_PROGRESS="bar")
    assert bar.returncode == 0, bar.stderr
    assert "100%|" in bar.stderr and "short loop" in bar.stderr  # tqdm draws on stderr


def _loop_in_process(monkeypatch, capsys, **env):
    from kadapter.progress import progress_bar, progress_log

    for key, value in env.items():
        monkeypatch.setenv(key, value) if value is not None else monkeypatch.delenv(key, raising=False)
    progress_log("stage: counting")
    with progress_bar(total=6, desc="count · setting A") as bar:
        for _ in range(6):
            bar.update(1)
    for _ in progress_bar(range(3), desc="short loop"):
        pass
    return capsys.readouterr()


def test_default_interval_prints_only_the_closing_line_of_a_short_loop(monkeypatch, capsys):
    out = _loop_in_process(monkeypatch, capsys, KADAPTER_PROGRESS="plain", KADAPTER_PROGRESS_INTERVAL=None)
    assert [line.split("]")[0] for line in out.out.splitlines()] == [
        "stage: counting", "[count · setting A", "[short loop"]


def test_off_is_silent(monkeypatch, capsys):
    out = _loop_in_process(monkeypatch, capsys, KADAPTER_PROGRESS="off")
    assert out.out == "" and out.err == ""


def test_bad_setting_is_named(monkeypatch, capsys):
    with pytest.raises(ValueError, match="KADAPTER_PROGRESS='fancy'.*plain"):
        _loop_in_process(monkeypatch, capsys, KADAPTER_PROGRESS="fancy")
    with pytest.raises(ValueError, match="KADAPTER_PROGRESS_INTERVAL='soon'"):
        _loop_in_process(monkeypatch, capsys, KADAPTER_PROGRESS="plain", KADAPTER_PROGRESS_INTERVAL="soon")


TRAIN = """
    import torch
    from torch import nn
    from kadapter.training import TrainConfig, train

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 1)
        def forward(self, x, y):
            return {"loss": ((self.linear(x).squeeze(-1) - y) ** 2).mean()}

    torch.manual_seed(0)
    x = torch.randn(24, 4)
    data = [{"x": x[i], "y": x[i].sum()} for i in range(24)]
    evaluate = lambda m: {"loss": float(m(torch.stack([d["x"] for d in data]), x.sum(-1))["loss"])}
    for single in (True, False):
        models = {"model": Tiny()} if single else {"+F": Tiny(), "+F (w/o knowledge)": Tiny()}
        config = TrainConfig(output_dir=f"out{single}", epochs=2, batch_size=8, seed=0, desc=DESC, cpu=True)
        train(models, data, config, collate_fn=torch.utils.data.default_collate, evaluate=evaluate)
        print("----")
"""


def test_trainer_lines_name_the_run(tmp_path):
    desc = "semeval · +F · seed 0 · lr 0.001"
    code = f"DESC = {desc!r}\n" + textwrap.dedent(TRAIN)
    out = run_python(code, tmp_path, KADAPTER_PROGRESS="plain", KADAPTER_PROGRESS_INTERVAL=None)
    assert out.returncode == 0, out.stderr
    runs = out.stdout.split("----\n")
    for single, text in zip((True, False), runs):
        lines = text.splitlines()
        names = ["model"] if single else ["+F", "+F (w/o knowledge)"]
        for epoch in (1, 2):
            for name in names:
                who = desc if name == "model" else f"{desc} · {name}"
                assert any(line.startswith(f"[{who}] epoch {epoch}/2 dev: loss=") for line in lines), lines
        assert lines[-1].startswith(f"[{desc}] 6/6 (100%) done in ")
        assert not any(line.startswith("epoch ") or " model:" in line for line in lines)


def test_library_bars_are_quiet_in_plain_mode(tmp_path, minilm_path):
    code = f"""
        import kadapter
        from kadapter import load_backbone
        load_backbone({minilm_path!r})
        print("loaded")
    """
    plain = run_python(code, tmp_path, KADAPTER_PROGRESS="plain")
    assert plain.returncode == 0, plain.stderr
    assert "Loading weights" not in plain.stderr + plain.stdout and plain.stdout.strip() == "loaded"
    bar = run_python(code, tmp_path, KADAPTER_PROGRESS="bar")  # the control: transformers does draw one
    assert bar.returncode == 0 and "Loading weights" in bar.stderr
