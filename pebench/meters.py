"""Evaluation meters shared by the built-in tasks.

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

import math

import torch

from pebench.task import IGNORE_INDEX

__all__ = [
    "SALIENCY_THRESHOLDS",
    "DepthMeter",
    "NormalsMeter",
    "SaliencyMeter",
    "SegmentationMeter",
]

# The published saliency protocol sweeps these binarisation thresholds and reports the best.
# Built in float64, as the community's numpy linspace is, then rounded once to float32 by the
# meter: a float32 linspace puts 0.45, 0.55, 0.6, 0.8 and 0.85 one float32 step off, which
# moves the scores of 8-bit probability maps whose values sit exactly on a threshold.
SALIENCY_THRESHOLDS: torch.Tensor = torch.linspace(0.2, 0.9, 15, dtype=torch.float64)
# What the community's depth evaluation puts in place of a non-positive prediction.
DEPTH_FLOOR = 1e-9

_NAN = float("nan")


def _check_same_shape(meter: str, prediction: torch.Tensor, target: torch.Tensor) -> None:
    if prediction.shape != target.shape:
        raise ValueError(
            f"{meter}: prediction shape {tuple(prediction.shape)} != target shape "
            f"{tuple(target.shape)}; resize the prediction to the target size (the evaluator's "
            "job) and pass the output of Task.predict, not the raw decoder output."
        )


def _drop_channel(meter: str, tensor: torch.Tensor, what: str) -> torch.Tensor:
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


class SegmentationMeter:
    """Confusion-count mean IoU and pixel accuracy over a whole split.

    A ``num_classes × num_classes`` confusion matrix (rows: target, columns: prediction) is
    accumulated over every non-ignored pixel of the split; per class,
    ``IoU_c = TP / (TP + FP + FN)``. Pooling counts over the split (rather than averaging
    per-image IoUs) is the published PASCAL-Context protocol and keeps small images and
    images without a class from dominating.

    ``mIoU`` averages IoU over *every* class of the dataset, a class with
    ``TP + FP + FN = 0`` (absent from the split's targets and predictions) scoring 0: the rule
    of the community's evaluators (``eval_semseg`` / ``eval_human_parts`` of
    Multi-Task-Learning-PyTorch, after ASTMT), behind every published PASCAL-Context number.
    ``mIoU_present`` averages over the classes that occur in the target or the prediction
    only (such a class carries no evidence either way); both are in every run record. A class
    that is only ever *predicted* has ``TP = 0 < FP`` and scores 0 under both.

    Pixels whose target is ``ignore_index`` are dropped together with their prediction.
    ``skip_uniform`` names label values that, filling an image's whole target, make the meter
    skip that image (the community's human-parts rule: a target that is all background or all
    ignored holds no part and is not evaluated, its predictions included).

    ``compute`` returns ``{"mIoU", "mIoU_present", "pixel_acc"}`` in percent, NaN if no valid
    pixel was seen.
    """

    accumulators = ("confusion",)

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX,
                 skip_uniform: tuple[int, ...] = ()) -> None:
        if num_classes < 1:
            raise ValueError(f"SegmentationMeter: num_classes must be >= 1, got {num_classes}.")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.skip_uniform = skip_uniform
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of class ids (B, H, W) against targets (B, H, W)."""
        _check_same_shape("SegmentationMeter", prediction, target)
        if prediction.is_floating_point() or prediction.is_complex():
            # Floats here almost always mean raw logits or probabilities, not Task.predict.
            raise ValueError(
                "SegmentationMeter: expected integer class ids (the argmax of Task.predict), "
                f"got a {prediction.dtype} tensor."
            )
        c = self.num_classes
        if self.skip_uniform:
            flat = target.reshape(target.shape[0], -1)
            uniform = (flat == flat[:, :1]).all(1)
            skipped = uniform & torch.isin(flat[:, 0], torch.tensor(
                self.skip_uniform, dtype=flat.dtype, device=flat.device))
            prediction, target = prediction[~skipped], target[~skipped]
        valid = target != self.ignore_index
        t = target[valid].long()
        p = prediction.to(target.device)[valid].long()
        if t.numel() == 0:
            return
        if bool(((t < 0) | (t >= c)).any()):
            bad = t[(t < 0) | (t >= c)].unique()[:5].tolist()
            raise ValueError(
                f"SegmentationMeter: target class ids {bad} are outside [0, {c}) and are not the "
                f"ignore index {self.ignore_index}; is num_classes right for this dataset?"
            )
        if bool(((p < 0) | (p >= c)).any()):
            bad = p[(p < 0) | (p >= c)].unique()[:5].tolist()
            raise ValueError(
                f"SegmentationMeter: predicted class ids {bad} are outside [0, {c}); the decoder "
                "has the wrong number of output channels."
            )
        # One bincount over (target, prediction) pairs builds the confusion matrix of the batch.
        counts = torch.bincount(t * c + p, minlength=c * c).reshape(c, c)
        self.confusion += counts.cpu()

    def iou_per_class(self) -> torch.Tensor:
        """float64 IoU per class; NaN for classes absent from both target and prediction (which
        ``mIoU`` counts as 0 and ``mIoU_present`` leaves out)."""
        conf = self.confusion.double()
        tp = conf.diagonal()
        union = conf.sum(0) + conf.sum(1) - tp  # = TP + FP + FN
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, _NAN))

    def compute(self) -> dict[str, float]:
        total = int(self.confusion.sum())
        if total == 0:
            return {"mIoU": _NAN, "mIoU_present": _NAN, "pixel_acc": _NAN}
        iou = self.iou_per_class()
        present = ~torch.isnan(iou)
        correct = int(self.confusion.diagonal().sum())
        return {
            "mIoU": 100.0 * float(iou.nan_to_num(0.0).mean()),
            "mIoU_present": 100.0 * float(iou[present].mean()),
            "pixel_acc": 100.0 * correct / total,
        }


class SaliencyMeter:
    """Per-image IoU / precision / recall of thresholded saliency probabilities.

    ``prediction`` must be probabilities in [0, 1] — the output of ``SaliencyTask.predict``,
    which is the only place in the harness where a sigmoid is applied. Values outside [0, 1]
    (raw logits, i.e. a missing sigmoid) raise ``ValueError``. A *double* sigmoid cannot be
    detected from the values alone (it maps into [0.5, 0.731]), which is why applying the
    sigmoid exactly once, in ``predict``, is a rule rather than a check.

    For every image and every threshold ``t`` a pixel is predicted salient when ``p > t``
    (strictly, as in the reference evaluation); on the valid pixels (target != 255):

    * IoU = TP / (TP + FP + FN), and 1 when prediction and target are both empty (a correct
      "nothing salient here" answer);
    * precision = TP / (TP + FP + 1e-12), recall = TP / (TP + FN + 1e-12).

    These are averaged over images per threshold. ``mIoU`` is the best mean IoU over the
    thresholds; ``maxF`` is the best ``2·P̄·R̄ / (P̄ + R̄ + 1e-12)`` where P̄, R̄ are the
    per-threshold means over images (F of the means, not a mean of per-image F). Both in
    percent. Images with no valid pixel are skipped; no image seen -> NaN.
    """

    accumulators = ("_iou_sum", "_precision_sum", "_recall_sum", "num_images")

    def __init__(self, thresholds: torch.Tensor | None = None,
                 ignore_index: int = IGNORE_INDEX) -> None:
        thr = SALIENCY_THRESHOLDS if thresholds is None else thresholds
        self.thresholds = thr.detach().to(torch.float32).flatten().cpu()
        self.ignore_index = ignore_index
        n = self.thresholds.numel()
        self._iou_sum = torch.zeros(n, dtype=torch.float64)
        self._precision_sum = torch.zeros(n, dtype=torch.float64)
        self._recall_sum = torch.zeros(n, dtype=torch.float64)
        self.num_images = 0

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add probabilities (B, 1, H, W) or (B, H, W) against targets (B, H, W)."""
        prob = _drop_channel("SaliencyMeter", prediction, "probability map")
        tgt = _drop_channel("SaliencyMeter", target, "target")
        _check_same_shape("SaliencyMeter", prob, tgt)
        prob = prob.to(tgt.device)
        # The negated form also rejects NaN, which would otherwise pass every comparison.
        out_of_range = ~((prob >= 0) & (prob <= 1))
        if bool(out_of_range.any()):
            finite = prob[torch.isfinite(prob)]
            lo = float(finite.min()) if finite.numel() else _NAN
            hi = float(finite.max()) if finite.numel() else _NAN
            raise ValueError(
                "SaliencyMeter: predictions must be probabilities in [0, 1] (the output of "
                f"SaliencyTask.predict), got values in [{lo:.4g}, {hi:.4g}]"
                f"{' and NaN' if bool(torch.isnan(prob).any()) else ''}. Raw logits? Apply "
                "predict (one sigmoid) before the meter."
            )
        valid = tgt != self.ignore_index
        if bool((tgt[valid] > 1).any() | (tgt[valid] < 0).any()):
            raise ValueError(
                "SaliencyMeter: targets must be 0 (background), 1 (salient) or "
                f"{self.ignore_index} (ignore)."
            )
        b = prob.shape[0]
        prob = prob.reshape(b, -1)
        if prob.is_floating_point() and prob.element_size() < 4:
            # A Python-float threshold would be rounded to half precision in the comparison.
            prob = prob.float()
        valid = valid.reshape(b, -1)
        positive = (tgt.reshape(b, -1) == 1) & valid
        keep = valid.any(1)  # images with no valid pixel carry no evidence
        if not bool(keep.any()):
            return
        prob, valid, positive = prob[keep], valid[keep], positive[keep]

        # One threshold at a time keeps memory at one (B, N) mask instead of (B, T, N).
        n_pos = positive.sum(-1, dtype=torch.float64)  # (B,)
        tp = torch.empty(prob.shape[0], len(self.thresholds), dtype=torch.float64,
                         device=prob.device)
        n_pred = torch.empty_like(tp)
        for j, t in enumerate(self.thresholds.tolist()):
            predicted = (prob > t) & valid
            tp[:, j] = (predicted & positive).sum(-1, dtype=torch.float64)
            n_pred[:, j] = predicted.sum(-1, dtype=torch.float64)
        fp = n_pred - tp
        fn = n_pos[:, None] - tp
        union = tp + fp + fn
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.ones_like(tp))
        precision = tp / (tp + fp + 1e-12)
        recall = tp / (tp + fn + 1e-12)

        self._iou_sum += iou.sum(0).cpu()
        self._precision_sum += precision.sum(0).cpu()
        self._recall_sum += recall.sum(0).cpu()
        self.num_images += int(keep.sum())

    def per_threshold(self) -> dict[str, torch.Tensor]:
        """Mean over images of IoU, precision and recall at every threshold (float64, 0–1)."""
        n = self.num_images
        if n == 0:
            nan = torch.full_like(self._iou_sum, _NAN)
            return {"iou": nan, "precision": nan.clone(), "recall": nan.clone()}
        return {
            "iou": self._iou_sum / n,
            "precision": self._precision_sum / n,
            "recall": self._recall_sum / n,
        }

    def compute(self) -> dict[str, float]:
        if self.num_images == 0:
            return {"mIoU": _NAN, "maxF": _NAN}
        curves = self.per_threshold()
        p, r = curves["precision"], curves["recall"]
        f = 2 * p * r / (p + r + 1e-12)
        return {
            "mIoU": 100.0 * float(curves["iou"].max()),
            "maxF": 100.0 * float(f.max()),
        }


class NormalsMeter:
    """Angular error of surface normals, in degrees, over every valid pixel of the split.

    Both prediction and target are L2-normalised over the channel dimension (so the
    prediction's scale is irrelevant) and the error is ``acos(clamp(dot, -1, 1))``, computed
    in float64 because float32 ``acos`` near 1 loses ~0.03° for nearly aligned vectors.
    Pixels whose target is the zero vector are ignored.

    The split is too large to keep every error (≈10⁹ pixels), so ``mean``, ``rmse`` (a true
    ``sqrt(mean(err²))``) and the ``within_*`` fractions (``err < t``, percent) come from
    exact float64 / int64 sums, while ``median`` comes from a histogram of 0.01° bins over
    [0°, 180°]: it is the bin centre of the middle element(s), hence within 0.005° of the
    exact median. All NaN if no valid pixel was seen.
    """

    THRESHOLDS: tuple[float, ...] = (11.25, 22.5, 30.0)
    BINS_PER_DEGREE: int = 100
    accumulators = ("count", "_sum", "_sum_sq", "_within", "_histogram")

    def __init__(self) -> None:
        self.count = 0
        self._sum = 0.0
        self._sum_sq = 0.0
        self._within = torch.zeros(len(self.THRESHOLDS), dtype=torch.int64)
        self._histogram = torch.zeros(180 * self.BINS_PER_DEGREE, dtype=torch.int64)

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add predicted normals (B, 3, H, W), any scale, against unit targets (B, 3, H, W)."""
        _check_same_shape("NormalsMeter", prediction, target)
        if target.dim() != 4 or target.shape[1] != 3:
            raise ValueError(
                f"NormalsMeter: expected (B, 3, H, W) normals, got {tuple(target.shape)}."
            )
        valid = (target != 0).any(dim=1)  # (B, H, W)
        if not bool(valid.any()):
            return
        # Gather the valid pixels first so the float64 copy is only as large as needed.
        pred = prediction.to(target.device).movedim(1, -1)[valid].double()
        tgt = target.movedim(1, -1)[valid].double()
        pred = torch.nn.functional.normalize(pred, dim=-1, eps=1e-12)
        tgt = torch.nn.functional.normalize(tgt, dim=-1, eps=1e-12)
        cos = (pred * tgt).sum(-1).clamp(-1.0, 1.0)
        err = torch.rad2deg(torch.acos(cos))

        self.count += err.numel()
        self._sum += float(err.sum())
        self._sum_sq += float((err * err).sum())
        within = torch.stack([(err < t).sum() for t in self.THRESHOLDS])
        self._within += within.cpu()
        bins = self._histogram.numel()
        index = (err * self.BINS_PER_DEGREE).floor().long().clamp(0, bins - 1)
        self._histogram += torch.bincount(index, minlength=bins).cpu()

    def _median(self) -> float:
        cumulative = self._histogram.cumsum(0)
        # 0-based ranks of the middle element(s); equal for an odd count.
        ranks = torch.tensor([(self.count - 1) // 2, self.count // 2], dtype=torch.int64)
        index = torch.searchsorted(cumulative, ranks, right=True)
        centres = (index.double() + 0.5) / self.BINS_PER_DEGREE
        return float(centres.mean())

    def compute(self) -> dict[str, float]:
        keys = ["mean", "median", "rmse"] + [f"within_{t:g}" for t in self.THRESHOLDS]
        if self.count == 0:
            return dict.fromkeys(keys, _NAN)
        n = self.count
        result = {
            "mean": self._sum / n,
            "median": self._median(),
            "rmse": math.sqrt(self._sum_sq / n),
        }
        for t, k in zip(self.THRESHOLDS, self._within.tolist(), strict=True):
            result[f"within_{t:g}"] = 100.0 * k / n
        return result


class DepthMeter:
    """Depth errors over every valid pixel (target > 0) of the split, pooled, not per image.

    * ``rmse`` = sqrt(mean((pred − gt)²)), in the target's unit;
    * ``abs_rel`` = mean(|pred − gt| / gt) (a ratio, not percent);
    * ``log_rmse`` = sqrt(mean((log pred − log gt)²));
    * ``delta_1.25`` = percent of pixels with max(pred/gt, gt/pred) < 1.25.

    A prediction ≤ 0 is replaced by ``floor`` (1e-9) before every metric, as the community's
    ``eval_depth`` does before rmse and log_rmse: the log and the ratio are undefined for a
    non-positive depth, and one replaced prediction serves all four metrics alike (a depth
    of 1e-9 is never "within 1.25"). All NaN if no valid pixel was seen.
    """

    accumulators = ("count", "_sq", "_abs_rel", "_log_sq", "_delta")

    def __init__(self, floor: float = DEPTH_FLOOR) -> None:
        if floor <= 0:
            raise ValueError(f"DepthMeter: floor must be positive, got {floor}.")
        self.floor = floor
        self.count = 0
        self._sq = 0.0
        self._abs_rel = 0.0
        self._log_sq = 0.0
        self._delta = 0

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add predicted depth against target depth, both (B, 1, H, W) or both (B, H, W)."""
        _check_same_shape("DepthMeter", prediction, target)
        valid = target > 0  # NaN targets compare False and are thereby ignored too
        if not bool(valid.any()):
            return
        gt = target[valid].double()
        pred = prediction.to(target.device)[valid].double()
        pred = torch.where(pred <= 0, torch.full_like(pred, self.floor), pred)
        diff = pred - gt
        ratio = torch.maximum(pred / gt, gt / pred)

        self.count += gt.numel()
        self._sq += float((diff * diff).sum())
        self._abs_rel += float((diff.abs() / gt).sum())
        self._log_sq += float(((pred.log() - gt.log()) ** 2).sum())
        self._delta += int((ratio < 1.25).sum())

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return dict.fromkeys(["rmse", "abs_rel", "log_rmse", "delta_1.25"], _NAN)
        n = self.count
        return {
            "rmse": math.sqrt(self._sq / n),
            "abs_rel": self._abs_rel / n,
            "log_rmse": math.sqrt(self._log_sq / n),
            "delta_1.25": 100.0 * self._delta / n,
        }
