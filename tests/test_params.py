"""`pebench params`: parameter accounting without training, data or weights."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass

import pandas as pd
import pytest
import torch
from cli_runner import run_cli
from torch import nn

from pebench import accounting
from pebench.data.base import DATASETS
from pebench.data.infos import NYUD, PASCAL_CONTEXT, dataset_info
from pebench.errors import PebenchError
from pebench.method import METHODS, Method
from pebench.task import TASKS

ENCODER = 27_517_818
DECODERS = 1_946_624
EXPECTED = {  # trainable parameters in the published setting, and the published count
    "decoder-only": (DECODERS, 1.94),
    "mtl-full": (ENCODER + DECODERS, 30.06),
    "single-task": (4 * ENCODER + DECODERS, 112.62),
}
JSON_KEYS = ["method", "decoders", "encoder_shared", "encoder_task_specific", "other",
             "trainable", "total", "published"]
BASELINES = "decoder-only,mtl-full,single-task"


def params_json(argv: list[str], capsys: pytest.CaptureFixture[str],
                monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    code, out, err = run_cli(["params", "--format", "json", *argv], capsys, monkeypatch)
    assert code == 0, err
    return json.loads(out)


def test_published_setting_counts_and_published_column() -> None:
    setting = accounting.resolve_setting()
    assert setting.is_published
    assert setting.tasks == ("semseg", "human_parts", "saliency", "normals")
    assert setting.img_size == 448
    rows = {r.method: r for r in accounting.count_methods(setting, list(EXPECTED)).rows}
    for method, (trainable, published) in EXPECTED.items():
        row = rows[method]
        assert row.counts.trainable == trainable, method
        assert row.counts.decoders == DECODERS
        assert row.published_m == published
        assert row.ratio == pytest.approx(trainable / (published * 1e6))
        assert row.built_on == "meta"
    assert rows["mtl-full"].counts.encoder_shared == ENCODER
    assert rows["single-task"].counts.encoder_task_specific == 4 * ENCODER
    assert rows["decoder-only"].counts.total == ENCODER + DECODERS


def test_table_shows_full_counts_published_and_ratio(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(["params", "--methods", BASELINES], capsys, monkeypatch)
    assert code == 0, err
    for text in ("1,946,624", "29,464,442", "112,017,896", "1.94M", "30.06M", "112.62M",
                 "1.003", "0.980", "0.995", "published", "ours /"):
        assert text in out, text
    assert "…" not in out  # no count is elided on a narrow (80-column) console


def test_json_has_exactly_the_documented_keys(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    rows = params_json(["--methods", BASELINES], capsys, monkeypatch)
    assert [row["method"] for row in rows] == BASELINES.split(",")
    for row in rows:
        assert list(row) == JSON_KEYS
        trainable, published = EXPECTED[row["method"]]
        assert row["trainable"] == trainable
        assert row["published"] == published
        assert row["trainable"] == sum(row[g] for g in JSON_KEYS[1:5])


def test_csv_parses_with_pandas(capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(["params", "--format", "csv", "--methods", BASELINES],
                             capsys, monkeypatch)
    assert code == 0, err
    frame = pd.read_csv(io.StringIO(out))
    assert list(frame.columns) == JSON_KEYS
    by_method = frame.set_index("method")
    for method, (trainable, published) in EXPECTED.items():
        assert by_method.loc[method, "trainable"] == trainable
        assert by_method.loc[method, "published"] == published


@pytest.mark.parametrize("argv", [
    ["--backbone", "swin-nano", "--dataset", "synthetic"],
    ["--img-size", "224"],
    ["--tasks", "semseg,human_parts,saliency"],
    ["--backbone", "swin-s"],
])
def test_no_published_count_outside_the_published_setting(
        argv: list[str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    rows = params_json(["--methods", BASELINES, *argv], capsys, monkeypatch)
    assert len(rows) == 3
    assert all(row["published"] is None for row in rows)


def test_methods_filter_and_default_is_every_method(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rows = params_json(["--methods", "mtl-full", "--backbone", "swin-nano"], capsys, monkeypatch)
    assert [row["method"] for row in rows] == ["mtl-full"]
    rows = params_json(["--backbone", "swin-nano"], capsys, monkeypatch)
    assert [row["method"] for row in rows] == METHODS.names()


BAD_INPUTS = [
    (["--methods", "lora-ish"], "unknown method 'lora-ish'"),
    (["--methods", "mtl-ful"], "Did you mean 'mtl-full'?"),
    (["--methods", "mtl-full,mtl-full"], "listed twice"),
    (["--methods", ","], "--methods names no method"),
    (["--dataset", "pascal"], "unknown dataset 'pascal'. Did you mean 'pascal-context'?"),
    (["--tasks", "semseg,depth"], "dataset 'pascal-context' has no labels for task 'depth'"),
    (["--tasks", "semseg,edges"], "unknown task 'edges'"),
    (["--tasks", "semseg,semseg"], "listed twice"),
    (["--backbone", "swin-x"], "unknown backbone 'swin-x'"),
    (["--img-size", "450"], "--img-size 450 is not valid"),
    (["--format", "xml"], "'xml' is not one of"),
    (["--set", "rank=4"], "not of the form method.key=value"),
    (["--methods", "mtl-full", "--set", "mtl-full.rank=4"], "has no hyperparameter 'rank'"),
    (["--methods", "mtl-full", "--set", "decoder-only.rank=4"], "not among the methods"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_exit_2(argv: list[str], message: str,
                                      capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(["params", *argv], capsys, monkeypatch)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert out == ""


def test_dataset_infos_are_those_the_loaders_register() -> None:
    assert dataset_info("synthetic") is DATASETS.get("synthetic").info
    assert dataset_info("pascal-context") is DATASETS.get("pascal-context").info is PASCAL_CONTEXT
    assert PASCAL_CONTEXT.num_classes == {"semseg": 21, "human_parts": 7}
    assert dataset_info("nyud") is DATASETS.get("nyud").info is NYUD
    assert NYUD.num_classes == {"semseg": 40}
    with pytest.raises(PebenchError, match="unknown dataset 'nyu'"):
        dataset_info("nyu")


def test_unregistered_default_tasks_are_skipped_not_fatal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    TASKS.names()  # load the built-ins before copying the table
    monkeypatch.setattr(TASKS, "_entries", {k: v for k, v in TASKS._entries.items()
                                            if k != "edge"})
    setting = accounting.resolve_setting("swin-nano", "nyud", img_size=64)
    assert setting.tasks == ("semseg", "depth", "normals")
    assert setting.skipped_tasks == ("edge",)
    (row,) = accounting.count_methods(setting, ["decoder-only"]).rows
    assert row.counts.trainable > 0
    with pytest.raises(PebenchError, match="task 'edge' of dataset 'nyud' is not implemented"):
        accounting.resolve_setting("swin-nano", "nyud", tasks=("edge",), img_size=64)


def test_meta_counts_equal_cpu_counts() -> None:
    setting = accounting.resolve_setting("swin-nano", "synthetic")
    meta = accounting.count_methods(setting, device="meta").rows
    cpu = accounting.count_methods(setting, device="cpu").rows
    assert [r.method for r in meta] == [r.method for r in cpu] == METHODS.names()
    for on_meta, on_cpu in zip(meta, cpu, strict=True):
        assert on_meta.counts == on_cpu.counts, on_meta.method
        assert on_cpu.built_on == "cpu"
    config = METHODS.get("mtl-full").Config()
    model = accounting.build_for_setting("mtl-full", setting, config, "meta")
    assert all(p.device.type == "meta" for p in model.parameters())


@dataclass
class ScaleConfig:
    scale: int = 1


class ScaledDecoderOnly(Method):
    """Decoder-only with one extra trainable scalar and a hyperparameter (test only)."""

    name = "scaled-test"
    description = "test only"
    Config = ScaleConfig
    published_name = "Fine-tuning decoders only"

    def attach(self, encoder: nn.Module) -> nn.Module:
        self.gain = nn.Parameter(torch.ones(1))
        return encoder


class MetaHostile(ScaledDecoderOnly):
    """The same, but its attach needs a real tensor value, which the meta device has not."""

    name = "meta-hostile-test"

    def attach(self, encoder: nn.Module) -> nn.Module:
        self.gain = nn.Parameter(torch.ones(1) * float(torch.ones(1).sum().item()))
        return encoder


@pytest.fixture
def test_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    METHODS.names()  # load the built-ins before copying the table
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    METHODS.add(ScaledDecoderOnly.name, ScaledDecoderOnly)
    METHODS.add(MetaHostile.name, MetaHostile)


@pytest.mark.usefixtures("test_methods")
def test_meta_failure_falls_back_to_cpu_and_says_so() -> None:
    setting = accounting.resolve_setting("swin-nano", "synthetic")
    hostile, friendly = accounting.count_methods(
        setting, ["meta-hostile-test", "scaled-test"]).rows
    assert hostile.built_on == "cpu"
    assert "meta device failed" in hostile.note
    assert friendly.built_on == "meta"
    assert friendly.note == ""
    assert hostile.counts == friendly.counts
    assert hostile.counts.other == 1


@pytest.mark.usefixtures("test_methods")
def test_non_default_hyperparameters_have_no_published_count(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    rows = params_json(["--methods", "scaled-test"], capsys, monkeypatch)
    assert rows[0]["published"] == 1.94
    assert rows[0]["trainable"] == DECODERS + 1
    rows = params_json(["--methods", "scaled-test", "--set", "scaled-test.scale=1"],
                       capsys, monkeypatch)
    assert rows[0]["published"] == 1.94
    rows = params_json(["--methods", "scaled-test", "--set", "scaled-test.scale=2"],
                       capsys, monkeypatch)
    assert rows[0]["published"] is None


def test_every_method_on_swin_t_in_process(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole command in the published setting; the time is reported, not asserted."""
    code, out, err = run_cli(["params", "--format", "json"], capsys, monkeypatch)
    assert code == 0, err
    rows = json.loads(out)
    assert [row["method"] for row in rows] == METHODS.names()
    published = accounting.published_trainable_m()
    for row in rows:
        cls = METHODS.get(row["method"])
        assert 0 < row["trainable"] <= row["total"]
        row_name = cls.published_row(cls.Config())
        expected = published.get(row_name) if row_name else None
        assert row["published"] == expected, row["method"]


def test_a_method_with_two_published_rows_matches_each(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for rank, published in (("16", 4.95), ("64", 8.34), ("32", None)):
        (row,) = params_json(["--methods", "mtlora", "--set", f"mtlora.rank={rank}"],
                             capsys, monkeypatch)
        assert row["published"] == published, rank


def test_a_method_whose_optional_package_is_missing_is_left_out_and_named(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` now raises ImportError
    code, out, err = run_cli(["params", "--format", "json", "--methods",
                              f"{BASELINES},peft"], capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.strip() == "error: the 'peft' method needs the peft package: pip install peft"
    code, out, err = run_cli(["params", "--format", "json", "--backbone", "swin-nano",
                              "--dataset", "synthetic"], capsys, monkeypatch)
    assert code == 0, err
    assert "peft" not in [row["method"] for row in json.loads(out)]
    assert "not counted: peft: the 'peft' method needs the peft package" in err
