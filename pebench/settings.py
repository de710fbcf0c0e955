"""What makes two runs the same experiment: the setting of a run, as its record stores it.

A sweep skips a setting that already has a completed record and resumes one that has a saved
state; a resume refuses to continue under a different setting. Both compare the dictionaries
built here, so "the same setting" is defined once. Pure data: no torch, no registry.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

METHOD_PREFIX = "method."
# Fields of RunConfig that say how or where a run executes, not what it computes.
NOT_SETTINGS = frozenset({"device", "out", "checkpoint_every", "checkpoint_minutes",
                          "method_overrides", "workers"})
# Setting fields a resume may change: a moved weights file is checked by its sha256 instead,
# and a moved dataset folder holds the same files.
MOVABLE = frozenset({"weights", "data_root"})


def jsonable(value: Any) -> Any:
    """A dataclass, tuple or Path as the JSON value a record stores."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# Setting fields added after records were first written, with the value every earlier run had.
LATER_FIELDS = {"eval_resolution": "input"}


def with_later_fields(config: dict[str, Any]) -> dict[str, Any]:
    """A record's ``config`` with the fields added since it was written, as its run had them:
    the ``LATER_FIELDS``, and ``decoder_lr``, which was the run's ``lr``."""
    return {**LATER_FIELDS, "decoder_lr": config.get("lr"), **config}


def setting(config: dict[str, Any], method_config: dict[str, Any]) -> dict[str, Any]:
    """The setting of a run from its record's ``config`` and ``method_config``."""
    values = {k: v for k, v in with_later_fields(config).items() if k not in NOT_SETTINGS}
    values.update({METHOD_PREFIX + k: v for k, v in method_config.items()})
    return jsonable(values)


def setting_key(values: dict[str, Any]) -> str:
    """A canonical string of a setting, to look settings up by."""
    return json.dumps(values, sort_keys=True, default=str)


def differences(before: dict[str, Any], after: dict[str, Any],
                ignore: frozenset[str] = frozenset()) -> list[str]:
    """Each field that differs, as the flag that set it: ``--batch-size 8 (asked: 4)``."""
    lines = []
    for key in sorted((set(before) | set(after)) - ignore):
        old, new = before.get(key), after.get(key)
        if old != new:
            lines.append(f"{as_flag(key, old)} (asked: {_shown(new)})")
    return lines


def as_flag(key: str, value: Any) -> str:
    """``--batch-size 8`` or, for a method hyperparameter, ``--set rank=4``."""
    if key.startswith(METHOD_PREFIX):
        return f"--set {key.removeprefix(METHOD_PREFIX)}={_shown(value)}"
    return f"--{key.replace('_', '-')} {_shown(value)}"


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
