"""``peft``: any Hugging Face PEFT tuner (LoRA, DoRA, IA3, VeRA, BOFT, LoHa, ...) on the timm
encoder, one adapter shared by every task or one adapter per task.

``--set config=FILE`` names a PEFT config: the ``adapter_config.json`` written by
``PeftConfig.save_pretrained`` (or its directory), or any JSON object with ``peft_type`` and
that tuner's fields, e.g. ``{"peft_type": "LORA", "r": 8, "lora_alpha": 8, "use_dora": true,
"target_modules": ["qkv"]}``. ``inference_mode`` is always false (a saved config says true,
which would freeze the adapter). Without a file the adapter is LoRA with r = 4, alpha = 4 on
every block's ``attn.qkv``: pebench's ``lora --set shared=true``.

Targets name modules of the timm ``SwinTransformer`` inside the encoder:
``patch_embed.proj`` (a Conv2d), ``layers.<stage>.blocks.<i>.attn.qkv``, ``attn.proj``,
``mlp.fc1``, ``mlp.fc2``, and ``layers.<stage>.downsample.reduction`` (patch merging, timm's
layout: stage s ≥ 1 begins with it). A list entry matches the end of a name at a dot, so
``"proj"`` hits ``patch_embed.proj`` as well as every ``attn.proj``; write ``"attn.proj"``,
or a string, which PEFT reads as a regular expression over the full name.

``per_task=true`` injects one adapter per task, named after the task, and runs the encoder
once per task with that task's adapter active. PEFT layers apply one adapter at a time to
the whole batch, so this is the per-task loop only: ``execution=batched`` is refused there.
A shared adapter runs the encoder once whatever ``execution`` says.

The PEFT layers are marked as encoder parameters: ``encoder_shared`` for the shared adapter,
``encoder_task_specific`` per task. Whatever else a config makes trainable (``bias="all"``
trains every bias of the encoder, once for all tasks) counts as ``encoder_shared``. The
``peft`` package is imported only when this method is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import torch
from torch import nn

from pebench.defaults import PEFT_LR
from pebench.errors import MissingDependency, PebenchError
from pebench.method import Execution, Method, TaskFeatures, per_task, register_method
from pebench.options import option
from pebench.params import ENCODER_SHARED, ENCODER_TASK_SPECIFIC

SHARED_ADAPTER = "shared"
DEFAULT_LORA = {"peft_type": "LORA", "r": 4, "lora_alpha": 4, "target_modules": ["qkv"]}
TARGET_HELP = ("module names: patch_embed.proj, layers.<stage>.blocks.<i>.attn.qkv|attn.proj|"
               "mlp.fc1|mlp.fc2, layers.<stage>.downsample.reduction; a list entry matches "
               "the end of a name (\"proj\" also hits patch_embed.proj), a string is a "
               "regular expression over the whole name")


def import_peft() -> ModuleType:
    try:
        import peft
    except ImportError as exc:
        raise MissingDependency("the 'peft' method needs the peft package: pip install peft"
                                ) from exc
    return peft


def load_peft_config(path: str) -> Any:
    """The PeftConfig in ``path`` (a JSON file, or a directory with adapter_config.json);
    one PebenchError line for a file that cannot be read, is not JSON or names no known
    tuner."""
    import_peft()
    from peft.config import PeftConfigMixin
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    file = Path(path)
    if file.is_dir():
        file = file / "adapter_config.json"
    try:
        fields = json.loads(file.read_text())
    except OSError as exc:
        raise PebenchError(f"PEFT config '{file}' cannot be read ({exc.strerror}); give a JSON "
                           "file such as the adapter_config.json of "
                           "PeftConfig.save_pretrained.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PebenchError(f"PEFT config '{file}' is not JSON ({exc}).") from exc
    if not isinstance(fields, dict) or not isinstance(fields.get("peft_type"), str):
        raise PebenchError(f"PEFT config '{file}' needs a \"peft_type\", e.g. "
                           f"{json.dumps(DEFAULT_LORA)}.")
    kind = fields["peft_type"].upper()
    if kind not in PEFT_TYPE_TO_TUNER_MAPPING:
        valid = ", ".join(sorted(str(t.value) for t in PEFT_TYPE_TO_TUNER_MAPPING))
        raise PebenchError(f"PEFT config '{file}': unknown peft_type '{fields['peft_type']}'; "
                           f"valid: {valid}.")
    fields.pop("runtime_config", None)
    fields.update(peft_type=kind, inference_mode=False)
    try:
        return PeftConfigMixin.from_peft_type(**fields)
    except (TypeError, ValueError) as exc:
        raise PebenchError(f"PEFT config '{file}' is not a valid {kind} config: {exc}") from exc


@dataclass
class PeftMethodConfig:
    config: str = option("", "PEFT config JSON file (or its folder); empty: LoRA r = 4 on "
                             "attn.qkv")
    per_task: bool = option(False, "one adapter per task (the per-task loop), not one shared")
    execution: Execution = option("loop", "per-task adapters run in the loop only")

    def __post_init__(self) -> None:
        if self.per_task and self.execution == "batched":
            raise ValueError("per-task PEFT adapters run in the per-task loop only (a PEFT "
                             "layer applies one adapter to the whole batch); use "
                             "execution=loop")
        if self.config:
            load_peft_config(self.config)  # a bad file is refused before anything runs


@register_method
class PeftTuner(Method):
    """A PEFT tuner injected into the timm encoder (module doc)."""

    name = "peft"
    description = ("any Hugging Face PEFT tuner from --set config=FILE.json (default LoRA r=4 "
                   "on qkv), shared or one adapter per task")
    Config: ClassVar[type] = PeftMethodConfig
    default_lr = PEFT_LR

    @property
    def task_specific_encoder(self) -> bool:
        return self.config.per_task

    @property
    def adapters(self) -> tuple[str, ...]:
        return self.tasks if self.config.per_task else (SHARED_ADAPTER,)

    def peft_config(self) -> Any:
        if self.config.config:
            return load_peft_config(self.config.config)
        import_peft()
        from peft.config import PeftConfigMixin

        return PeftConfigMixin.from_peft_type(**DEFAULT_LORA)

    def attach(self, encoder: nn.Module) -> nn.Module:
        peft = import_peft()
        from peft.functional import set_requires_grad
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils.other import AuxiliaryTrainingWrapper

        config = self.peft_config()
        first, *others = self.adapters
        try:
            # get_peft_model injects in place (encoder.model keeps its identity) and, unlike
            # inject_adapter_in_model, also takes tuners whose state is shared across layers
            # (VeRA); the PeftModel wrapper itself is not needed afterwards.
            wrapper = peft.get_peft_model(encoder.model, config, adapter_name=first)
            for adapter in others:
                wrapper.add_adapter(adapter, config)
        except (ValueError, TypeError, NotImplementedError) as exc:
            source = self.config.config or "the default LoRA"
            raise PebenchError(f"PEFT config {source} does not fit the "
                               f"{encoder.spec.name} encoder: {exc} ({TARGET_HELP}).") from exc
        # PEFT trains only the active adapter; every task's adapter trains here.
        set_requires_grad(encoder.model, list(self.adapters), True)
        group = ENCODER_TASK_SPECIFIC if self.config.per_task else ENCODER_SHARED
        for module in encoder.model.modules():
            if isinstance(module, (BaseTunerLayer, AuxiliaryTrainingWrapper)):
                module.param_group = group
        return encoder

    def encode(self, encoder: nn.Module, images: torch.Tensor) -> TaskFeatures:
        if not self.config.per_task:
            return dict.fromkeys(self.tasks, encoder(images))
        from peft.functional import set_adapter, set_requires_grad

        def run(task: int | None) -> list[torch.Tensor]:
            assert task is not None  # per-task PEFT adapters run in the loop only
            # set_adapter freezes the inactive adapters; they are all trained here, so their
            # requires_grad is restored before anything runs.
            set_adapter(encoder.model, self.tasks[task])
            set_requires_grad(encoder.model, list(self.tasks), True)
            return encoder(images)

        return per_task(encoder.task_context, self.tasks, "loop", run)
