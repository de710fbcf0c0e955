"""The rules every built-in task's meter follows, and the checks they share (each task's
file holds its meter, as a plug-in task holds its own).

Every meter follows the :class:`pebench.task.Meter` protocol: ``update`` is called once per
batch with what ``Task.predict`` returned and the target, ``compute`` once at the end of the
split. The rules they share, and why:

* Inputs may live on any device. Per-batch statistics are computed where the tensors are
  (so a GPU evaluation never copies whole images to the host) and only small summaries
  (counts, sums, histograms) are moved to the CPU accumulators.
* ``update`` runs under ``torch.no_grad`` so that an evaluator that forgets to disable
  autograd does not keep the graph of every batch alive.
* Accumulators are float64 / int64: a split of 5,000 images × 500×375 pixels has ~10⁹ valid
  pixels, beyond what float32 sums (24-bit mantissa) can count exactly.
* ``accumulators`` names every attribute that sums over the split (counts, sums,
  histograms) and nothing else: a split evaluated in shares by several processes gives the
  meter of the whole split when these are summed (``pebench.distributed.sum_meter``).
* ``compute`` returns plain Python floats. A meter that never saw a valid pixel returns NaN
  for every metric: "no evidence" must not look like a score of 0 (or 100).
* Percent is used for IoU-, F-, accuracy- and fraction-like metrics, degrees for angles, the
  target's own unit for depth errors, as in the published PASCAL-Context / NYUD tables.
* Prediction and target must have the same spatial size; resizing is the evaluator's job, so
  a mismatch raises instead of being silently interpolated here.
"""

from __future__ import annotations

import torch

# "No evidence": what a meter that never saw a valid pixel returns for every metric.
NAN = float("nan")


def check_prediction_shape(meter: str, prediction: torch.Tensor, target: torch.Tensor) -> None:
    if prediction.shape != target.shape:
        raise ValueError(
            f"{meter}: prediction shape {tuple(prediction.shape)} != target shape "
            f"{tuple(target.shape)}; resize the prediction to the target size (the evaluator's "
            "job) and pass the output of Task.predict, not the raw decoder output."
        )


def drop_channel(meter: str, tensor: torch.Tensor, what: str) -> torch.Tensor:
    """(B, 1, H, W) -> (B, H, W): single-channel maps may come with or without the channel."""
    if tensor.dim() == 4:
        if tensor.shape[1] != 1:
            raise ValueError(
                f"{meter}: expected a single-channel {what} of shape (B, 1, H, W) or (B, H, W), "
                f"got {tuple(tensor.shape)}."
            )
        return tensor[:, 0]
    if tensor.dim() != 3:
        raise ValueError(
            f"{meter}: expected a {what} of shape (B, 1, H, W) or (B, H, W), "
            f"got {tuple(tensor.shape)}."
        )
    return tensor
