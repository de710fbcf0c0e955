"""Bad input: one line naming what was wrong and what is valid, a non-zero exit, no traceback,
and nothing written that looks like a result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import run_cli

BAD_INPUTS = [
    (["run", "--method", "lora-ish"], "unknown method 'lora-ish'"),
    (["run", "--method", "mtl-ful"], "Did you mean 'mtl-full'?"),
    (["run", "--method", "mtl-full", "--tasks", "semseg,edges"], "unknown task 'edges'"),
    (["run", "--method", "mtl-full", "--dataset", "pascal"], "unknown dataset 'pascal'"),
    (["run", "--method", "mtl-full", "--backbone", "swin-x"], "unknown backbone 'swin-x'"),
    (["run", "--method", "mtl-full", "--steps", "-1"], "--steps must be ≥ 0, got -1"),
    (["run", "--method", "mtl-full", "--steps", "abc"], "Invalid value for '--steps'"),
    (["run", "--method", "mtl-full", "--steps", "3", "--epochs", "1"], "either --steps or"),
    (["run", "--method", "mtl-full", "--batch-size", "0"], "--batch-size must be ≥ 1"),
    (["run", "--method", "mtl-full", "--lr", "0"], "finite positive number, got 0.0"),
    (["run", "--method", "mtl-full", "--img-size", "102"], "--img-size 102 is not valid"),
    (["run", "--method", "mtl-full", "--weights", "/nonexistent/w.pth"], "is not a file"),
    (["run", "--method", "mtl-full", "--backbone", "swin-t"], "has no embedded weights"),
    (["run", "--method", "mtl-full", "--tasks", "semseg,semseg"], "listed twice"),
    (["run", "--method", "mtl-full", "--device", "tpu"], "unknown --device 'tpu'"),
    (["run", "--method", "mtl-full", "--set", "rank=4"], "has no hyperparameter 'rank'"),
    (["run", "--method", "mtl-full", "--set", "rank"], "not of the form key=value"),
    # Settings a method refuses when it is attached: caught before anything is recorded.
    (["run", "--method", "adapter", "--set", "reduction=5"], "reduction=5 must divide every"),
    (["run", "--method", "vl-adapter", "--set", "shared=false"], "shares one adapter set"),
    (["run", "--method", "lora", "--set", "targets=attn.q"], "targets attn.q must be among"),
    (["run", "--method", "vpt-deep", "--set", "num_prompts=0"], "num_prompts must be ≥ 1"),
    (["run", "--method", "peft", "--set", "config=/nonexistent.json"], "cannot be read"),
    (["list", "widgets"], "'widgets' is not one of"),
    # Checked before anything is built: no bad setting may cost a training run.
    (["run", "--method", "mtl-full", "--tasks", ","], "--tasks names no task"),
    (["run", "--method", "mtl-full", "--img-size", "0"], "--img-size 0 is not valid"),
    (["run", "--method", "mtl-full", "--seed", "-1"], "--seed must be ≥ 0, got -1"),
    (["run", "--method", "mtl-full", "--seed", "99999999999"], "--seed must be ≤ 4294967295"),
    (["run", "--method", "mtl-full", "--lr", "inf"], "--lr must be a finite positive number"),
    (["run", "--method", "mtl-full", "--lr", "nan"], "--lr must be a finite positive number"),
    (["run", "--method", "adapter", "--set", "init_std=nan"], "expected a finite number"),
    (["run", "--method", "adapter", "--set", "init_std=-inf"], "expected a finite number"),
    (["run", "--method", "mtl-full", "--device", "cudaXYZ"], "unknown --device 'cudaXYZ'"),
    (["run", "--method", "mtl-full", "--checkpoint-every", "-1"], "--checkpoint-every must"),
    (["run", "--method", "mtl-full", "--checkpoint-minutes", "nan"], "--checkpoint-minutes"),
    (["run", "--method", "mtl-full", "--steps", "99999999999999999999999"],
     "--steps must be ≤ 100,000,000"),
    (["run", "--method", "mtl-full", "--img-size", "100000"], "from 32 to 2048"),
    (["run"], "give --method M"),
    (["run", "--resume", "20260101T000000-lora-nope"], "no run '20260101T000000-lora-nope'"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_and_nonzero(argv: list[str], message: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "runs"
    extra = ["--out", str(out)] if argv[0] == "run" else []
    code, _, err = run_cli(argv + extra, capsys, monkeypatch)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in err
    assert not out.exists(), "a rejected run must not leave a record"


def _bad_weights(kind: str, folder: Path) -> Path:
    """A weights file that is ``kind``: empty, truncated, random bytes, text, or a readable
    checkpoint of another architecture."""
    import torch

    path = folder / f"{kind}.pth"
    if kind == "other-architecture":
        torch.save({"conv.weight": torch.zeros(4, 3, 3, 3)}, path)
    elif kind == "truncated":
        torch.save({"patch_embed.proj.weight": torch.zeros(32, 3, 4, 4)}, path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes({"empty": b"", "random": bytes(range(256)) * 20,
                          "text": b"not a checkpoint\n"}[kind])
    return path


SETUP_BAD_INPUTS = [
    ("empty", "could not read weights file"),
    ("truncated", "could not read weights file"),
    ("random", "could not read weights file"),
    ("text", "could not read weights file"),
    ("other-architecture", "does not match backbone 'swin-nano'"),
    ("empty --data-root", "split file"),
    ("--batch-size 100000", "--batch-size 100000 exceeds the 4096 training images"),
]


@pytest.mark.parametrize(("case", "message"), SETUP_BAD_INPUTS)
def test_bad_input_found_in_setup_leaves_no_record(case: str, message: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Found only once the run sets up its data and model, yet still before it starts."""
    out = tmp_path / "runs"
    argv = ["run", "--method", "bitfit", "--steps", "1", "--out", str(out)]
    if case == "empty --data-root":
        (tmp_path / "empty").mkdir()
        argv += ["--dataset", "pascal-context", "--data-root", str(tmp_path / "empty"),
                 "--weights", "none"]
    elif case.startswith("--batch-size"):
        argv += case.split()
    else:
        argv += ["--weights", str(_bad_weights(case, tmp_path))]
    code, _, err = run_cli(argv, capsys, monkeypatch)
    (line,) = err.strip().splitlines()
    assert code == 2 and line.startswith("error: ") and message in line, line
    assert "Traceback" not in err
    assert list(out.iterdir()) == [], "bad input must not leave a (failed) record"


@pytest.mark.parametrize("where", ["a file", "under a file", "/proc"])
def test_an_unwritable_output_folder_is_refused_before_training(
        where: str, tmp_path: Path, isolated_cache: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "some-file.txt"
    file.write_text("not a folder")
    out = {"a file": file, "under a file": file / "runs",
           "/proc": Path("/proc/pebench-runs")}[where]
    expected = {"a file": "is a file", "under a file": "which is a file",
                "/proc": "cannot be written"}[where]
    trained = []
    monkeypatch.setattr("pebench.execution.Execution.run", lambda self: trained.append(1))
    code, _, err = run_cli(["run", "--method", "lora", "--out", str(out)], capsys, monkeypatch)
    assert code == 2 and not trained
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: --out '{out}'") and expected in line, line
    # Nothing written beside the file (the user cache, where the catalog lives, aside).
    written = sorted(p for p in tmp_path.iterdir() if p != isolated_cache)
    assert file.read_text() == "not a folder" and written == [file]


def test_cuda_without_cuda_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run_cli(["run", "--method", "mtl-full", "--device", "cuda", "--out",
                         str(tmp_path)], capsys, monkeypatch)
    assert code == 2
    assert "CUDA is not available" in err


def test_a_cuda_device_this_machine_lacks_is_refused(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    code, _, err = run_cli(["run", "--method", "mtl-full", "--device", "cuda:2", "--out",
                            str(tmp_path / "runs")], capsys, monkeypatch)
    assert code == 2
    assert "--device cuda:2: this machine has 2 CUDA device(s), cuda:0 to cuda:1" in err
    assert not (tmp_path / "runs").exists()


def test_no_traceback_from_the_installed_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pebench", "run", "--method", "nope", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: unknown method 'nope'")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_dataset_constraints_are_checked(tmp_path: Path) -> None:
    from pebench.config import RunConfig
    from pebench.data.base import DATASETS, DatasetInfo, DatasetSource
    from pebench.errors import PebenchError

    class OnDisk(DatasetSource):
        info = DatasetInfo(name="on-disk-test", tasks=("semseg",), default_tasks=("semseg",),
                           num_classes={"semseg": 3})
        description = "test only"

        def build(self, split, root, img_size, tasks, train):  # type: ignore[no-untyped-def]
            raise AssertionError("never built")

    DATASETS.add("on-disk-test", OnDisk)
    base = {"method": "mtl-full", "dataset": "on-disk-test", "weights": "none"}
    with pytest.raises(PebenchError, match="needs --data-root"):
        RunConfig(**base).resolved()
    with pytest.raises(PebenchError, match="is not a directory"):
        RunConfig(**base, data_root=tmp_path / "missing").resolved()
    with pytest.raises(PebenchError, match="has no labels for task 'normals'; it offers: semseg"):
        RunConfig(**base, data_root=tmp_path, tasks=("normals",)).resolved()
    assert RunConfig(**base, data_root=tmp_path).resolved().tasks == ("semseg",)


# Exit code, then the heavy modules imported, of `pebench ARGV` in a fresh process.
PRECHECK_PROBE = ("import sys\nfrom pebench.cli import main\n"
                  "sys.argv = ['pebench', *sys.argv[1:]]\n"
                  "try:\n    main()\nexcept SystemExit as exc:\n"
                  "    print(exc.code, sorted({'torch', 'timm'} & set(sys.modules)))\n")


@pytest.mark.parametrize(("argv", "message"), [
    (["--method", "lora-ish"], "unknown method 'lora-ish'. Did you mean 'lora'?"),
    (["--method", "lora", "--tasks", "semseg,edges"], "unknown task 'edges'"),
    (["--method", "lora", "--tasks", "depth", "--dataset", "pascal-context"],
     "dataset 'pascal-context' has no labels for task 'depth'"),
    (["--method", "lora", "--backbone", "swin-x"], "unknown backbone 'swin-x'"),
    (["--method", "lora", "--img-size", "102"], "--img-size 102 is not valid for swin-nano"),
    (["--method", "lora", "--set", "rnk=3"], "method 'lora' has no hyperparameter 'rnk'"),
    (["--method", "lora", "--steps", "-1"], "--steps must be ≥ 0, got -1"),
    (["--method", "lora", "--lr", "inf"], "--lr must be a finite positive number"),
    (["--method", "lora", "--eval-resolution", "native"], "unknown --eval-resolution"),
])
def test_bad_names_and_numbers_are_refused_before_torch_is_imported(
        argv: list[str], message: str, tmp_path: Path) -> None:
    """Against the catalog of the registries (built once per install; here by the test
    process, whose registries are loaded), no bad option costs the torch and timm import."""
    from pebench.catalog import catalog

    catalog()
    done = subprocess.run([sys.executable, "-c", PRECHECK_PROBE, "run", *argv, "--out",
                           str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "2 []", (done.stdout, done.stderr)
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert not (tmp_path / "runs").exists()
