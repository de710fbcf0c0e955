"""Loading local backbone checkpoints: timm format or the original Microsoft Swin release.

Nothing is ever downloaded: the user gives a path. The original release stores
``{"model": state_dict}`` with patch merging at the end of each stage and ``head.*``; timm's
own converter (``checkpoint_filter_fn``) renames those keys, drops the non-persistent
buffers and resizes relative-position tables when the window size differs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file as load_safetensors
from timm.models.swin_transformer import checkpoint_filter_fn

from pebench.backbones import SwinEncoder
from pebench.errors import PebenchError, first_line

# Keys a classification checkpoint carries that feed none of the dense feature taps.
_UNUSED_PREFIXES = ("head.", "norm.")
_WRAPPER_KEYS = ("model", "state_dict", "module")


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch pickle, unwrapping common wrappers."""
    if not path.is_file():
        raise PebenchError(f"weights file '{path}' does not exist. Give the path of a local Swin "
                           "checkpoint (timm or original Microsoft format), or --weights none.")
    try:
        if path.suffix == ".safetensors":
            state: object = load_safetensors(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # The exception's type, not its text: torch's texts run to a paragraph of advice.
        raise PebenchError(f"could not read weights file '{path}' ({type(exc).__name__}): it "
                           "is not a complete torch or safetensors checkpoint.") from exc
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PebenchError(f"weights file '{path}' holds no state dict of tensors; expected a timm "
                           "state dict or the original Swin format {'model': state_dict}.")
    return state


def load_backbone_weights(encoder: SwinEncoder, path: Path) -> None:
    """Load a checkpoint into ``encoder``, or fail with one line saying how it mismatches."""
    state = read_checkpoint(path)
    model = encoder.model
    try:
        with warnings.catch_warnings():
            # timm's relative-position-table resizing trips torch deprecation warnings that
            # say nothing about the user's checkpoint and would bury pebench's own output.
            warnings.simplefilter("ignore", UserWarning)
            state = checkpoint_filter_fn(state, model)
    except (AttributeError, RuntimeError, ValueError, KeyError) as exc:
        raise _mismatch(path, encoder, f"conversion failed ({first_line(exc)})") from exc
    state = {k: v for k, v in state.items() if not k.startswith(_UNUSED_PREFIXES)}
    expected = model.state_dict()
    expected = {k: v for k, v in expected.items() if not _is_buffer_rebuilt_by_timm(k)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    common = set(state) & set(expected)
    wrong_shape = sorted(k for k in common if state[k].shape != expected[k].shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if wrong_shape:
        key = wrong_shape[0]
        problems.append(f"{len(wrong_shape)} of the wrong shape (e.g. {key}: "
                        f"{tuple(state[key].shape)} vs {tuple(expected[key].shape)})")
    if problems:
        raise _mismatch(path, encoder, "; ".join(problems))
    model.load_state_dict(state, strict=True)


def _is_buffer_rebuilt_by_timm(key: str) -> bool:
    return key.endswith(("relative_position_index", "attn_mask"))


def _mismatch(path: Path, encoder: SwinEncoder, detail: str) -> PebenchError:
    return PebenchError(f"weights file '{path}' does not match backbone '{encoder.spec.name}': "
                        f"{detail}. Check that the checkpoint is for {encoder.spec.name}.")
