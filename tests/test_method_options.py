"""Every method hyperparameter explains itself: a one-line help per ``--set`` key, printed
with its type and default by ``pebench list methods --verbose``."""

from __future__ import annotations

import dataclasses

import pytest
from cli_runner import run_cli

from pebench.method import METHODS
from pebench.options import option_docs, option_help


@pytest.mark.parametrize("method", METHODS.names())
def test_every_hyperparameter_has_a_one_line_help(method: str) -> None:
    config = METHODS.get(method).Config
    for field in dataclasses.fields(config):
        text = option_help(config, field.name)
        assert text and "\n" not in text, f"{method}: --set {field.name} has no one-line help"


def test_a_subclass_that_changes_a_default_keeps_the_help() -> None:
    pfeiffer = {doc.key: doc for doc in option_docs(METHODS.get("pfeiffer-adapter").Config)}
    adapter = {doc.key: doc for doc in option_docs(METHODS.get("adapter").Config)}
    assert pfeiffer["reduction"].default == "16" and adapter["reduction"].default == "4"
    assert pfeiffer["reduction"].help == adapter["reduction"].help != ""


def test_list_methods_verbose_prints_every_key_with_type_default_and_help(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(["list", "methods", "--verbose"], capsys, monkeypatch)
    assert code == 0
    lines = [" ".join(cell.strip() for cell in line.split("│") if cell.strip())
             for line in out.splitlines()]
    assert "lora rank int 4 rank r of each update B·A" in lines
    assert "lora targets str,… attn.qkv comma-separated block linears to adapt (attn.qkv, " \
           "attn.proj, mlp.fc1, mlp.fc2)" in lines
    assert "adapter activation gelu|relu|swish gelu nonlinearity inside the adapter" in lines
    assert "mtl-full — no hyperparameters" in lines
    code, plain, _ = run_cli(["list", "methods"], capsys, monkeypatch)
    assert code == 0 and "rank r of each update" not in plain
