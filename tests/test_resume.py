"""Runs that survive: a real SIGKILL mid-training, SIGTERM and SIGINT, then a resume that ends
with exactly the metrics of the uninterrupted run; resumes under another setting refused."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli
from conftest import fail_training_at, interrupted_at_start
from processes import SMALL_RUN, finish, only_record, records, start, states, wait_for

from pebench.api import resume, run
from pebench.checkpoint import TrainingState
from pebench.config import RunConfig
from pebench.errors import PebenchError

STEPS = 40
RUN = ["run", *SMALL_RUN, "--steps", str(STEPS), "--eval-every", "20", "--checkpoint-every", "5"]
OUTCOME = ("status", "steps", "steps_done", "metrics", "primary", "eval_history", "params")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted")
    done = finish([*RUN, "--out", str(out)])
    assert done.returncode == 0, done.stderr
    return only_record(out)


def state_saved(out: Path) -> bool:
    """A state is saved and the record says so (it is rewritten just after the state: a kill
    in between would leave the record one state behind, which a resume does not need)."""
    if not states(out):
        return False
    found = records(out)
    return bool(found) and found[0].get("resume_command") is not None


def test_sigkill_mid_training_then_resume_is_bit_identical(tmp_path: Path,
                                                           uninterrupted: dict) -> None:
    process = start([*RUN, "--out", str(tmp_path)])
    wait_for(lambda: state_saved(tmp_path), "the first saved state", process=process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    killed = only_record(tmp_path)
    assert killed["status"] == "running"  # what a killed run leaves: never "completed"
    (state_file,) = states(tmp_path)
    saved = TrainingState.load(state_file)
    saved_step = saved.step
    assert 0 < saved_step < STEPS, saved_step
    assert killed["steps_done"] == saved_step  # the record was updated with each state
    assert killed["resume_command"].startswith(f"pebench run --resume {killed['run_id']}")

    resumed = finish(["run", "--resume", killed["run_id"], "--out", str(tmp_path), "--quiet"])
    assert resumed.returncode == 0, resumed.stderr
    record = only_record(tmp_path)
    for key in OUTCOME:
        assert record[key] == uninterrupted[key], key
    assert [r["step"] for r in record["resumes"]] == [saved_step]
    assert saved.data_s > 0  # the state keeps the wait for batches before the kill
    assert record["resume_command"] is None and not states(tmp_path)
    assert (tmp_path / record["checkpoint"]).is_file()


def ignore_sigint() -> None:
    """What a shell does to a job it starts in the background (``pebench run ... &``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(("sig", "code", "background"), [
    (signal.SIGTERM, 143, False), (signal.SIGINT, 130, False), (signal.SIGINT, 130, True)])
def test_a_signal_saves_the_state_and_says_how_to_resume(sig: signal.Signals, code: int,
                                                         background: bool, tmp_path: Path,
                                                         uninterrupted: dict) -> None:
    process = start([*RUN, "--out", str(tmp_path)],
                    preexec_fn=ignore_sigint if background else None)
    wait_for(lambda: state_saved(tmp_path), "the first saved state", process=process)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    (line,) = err.strip().splitlines()
    record = only_record(tmp_path)
    assert record["status"] == "interrupted"
    assert line.startswith(f"interrupted by {sig.name} at step {record['steps_done']} of {STEPS}")
    assert line.endswith(f"Resume with: {record['resume_command']}")
    assert 0 < record["steps_done"] < STEPS and record["metrics"] == {}
    assert TrainingState.load(states(tmp_path)[0]).step == record["steps_done"]
    if sig is signal.SIGINT:
        return  # the SIGTERM case resumes with the printed command
    argv = record["resume_command"].split()[1:]
    resumed = finish([*argv, "--quiet"])
    assert resumed.returncode == 0, resumed.stderr
    for key in OUTCOME:
        assert only_record(tmp_path)[key] == uninterrupted[key], key


def small_config(out: Path, **settings: object) -> RunConfig:
    """SMALL_RUN in-process."""
    values: dict = {"method": "lora", "img_size": 64, "batch_size": 2, "eval_batch_size": 64,
                    "weights": "none", **settings}
    return RunConfig(out=out, **values)


def stopped_at_start(out: Path, **settings: object) -> str:
    return interrupted_at_start(small_config(out, steps=3, **settings))


@pytest.mark.parametrize(("flags", "message"), [
    (["--batch-size", "4"], "started with --batch-size 2 (asked: 4)"),
    (["--set", "rank=8"], "started with --set rank=4 (asked: 8)"),
    (["--method", "bitfit"], "started with --method lora (asked: bitfit). Leave"),
    (["--tasks", "semseg"], "--tasks semseg,human_parts,saliency,normals (asked: semseg)"),
    (["--seed", "1"], "--seed 0 (asked: 1)"),
])
def test_resuming_under_another_setting_is_refused(flags: list[str], message: str,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = stopped_at_start(tmp_path)
    before = (tmp_path / f"{run_id}.json").read_bytes()
    code, _, err = run_cli(["run", "--resume", run_id, "--out", str(tmp_path), *flags],
                           capsys, monkeypatch)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: cannot resume run {run_id} with another setting")
    assert message in line
    assert (tmp_path / f"{run_id}.json").read_bytes() == before, "a refusal changes nothing"
    assert not (tmp_path / f"{run_id}.lock").exists()


def test_other_backbone_weights_are_refused_by_sha256(tmp_path: Path) -> None:
    from pebench.backbones import BACKBONES, SwinEncoder

    weights = tmp_path / "swin-nano.pth"
    torch.manual_seed(0)
    torch.save(SwinEncoder(BACKBONES.get("swin-nano"), 64).model.state_dict(), weights)
    run_id = stopped_at_start(tmp_path / "runs", weights=str(weights))
    torch.manual_seed(1)
    torch.save(SwinEncoder(BACKBONES.get("swin-nano"), 64).model.state_dict(), weights)
    with pytest.raises(PebenchError, match=r"its backbone weights had sha256 [0-9a-f]{64}, "):
        resume(run_id, tmp_path / "runs", show_progress=False)


def test_resume_finishes_a_run_stopped_before_its_first_step(tmp_path: Path) -> None:
    run_id = stopped_at_start(tmp_path)
    record = resume(run_id, tmp_path, show_progress=False)
    expected = run(small_config(tmp_path / "plain", steps=3), show_progress=False)
    assert record.status == "completed" and record.metrics == expected.metrics
    assert not list(tmp_path.glob("*.state.pt")) and not list(tmp_path.glob("*.lock"))


def test_a_resumed_run_counts_the_wait_for_data_before_its_interruption(
        tmp_path: Path) -> None:
    run_id = stopped_at_start(tmp_path)
    (path,) = states(tmp_path)
    state = TrainingState.load(path)
    state.data_s = 100.0  # far more than the resumed steps can wait, so it must be carried
    state.save(path)
    record = resume(run_id, tmp_path, show_progress=False)
    assert record.timing["data_s"] >= 100.0


@pytest.mark.parametrize(("case", "message"), [
    ("unknown", "no run 'nope' in"),
    ("completed", "is completed; there is nothing to resume"),
    ("corrupt", "cannot be read"),
    ("no-state", "has no saved state to resume from"),
])
def test_what_cannot_be_resumed_is_one_line(case: str, message: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    reference = "nope"
    if case == "completed":
        reference = run(small_config(tmp_path, steps=1, method="decoder-only"),
                        show_progress=False).run_id
    elif case in ("corrupt", "no-state"):
        reference = stopped_at_start(tmp_path)
        state = tmp_path / f"{reference}.state.pt"
        if case == "corrupt":
            state.write_bytes(state.read_bytes()[:100])
        else:
            state.unlink()
    code, _, err = run_cli(["run", "--resume", reference, "--out", str(tmp_path)], capsys,
                           monkeypatch)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and message in line, line


def test_a_failure_after_a_saved_state_keeps_the_run_resumable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_step = fail_training_at(monkeypatch, 3)
    config = small_config(tmp_path, steps=5, checkpoint_every=2)
    with pytest.raises(RuntimeError):
        run(config, show_progress=False)
    (record,) = records(tmp_path)
    assert record["status"] == "failed" and record["steps_done"] == 2
    assert record["error"].endswith("its state at step 2 is kept")
    monkeypatch.setattr("pebench.train.Trainer.train_step", real_step)
    finished = resume(record["run_id"], tmp_path, show_progress=False)
    expected = run(small_config(tmp_path / "plain", steps=5), show_progress=False)
    assert finished.status == "completed" and finished.metrics == expected.metrics
    assert json.loads((tmp_path / f"{record['run_id']}.json").read_text())["error"] is None
