"""What the harness knows about the real benchmarks without loading any of their data.

The label spaces of PASCAL-Context (the multi-task split of Maninis et al., 2019) and NYUD-v2
are facts, so parameter accounting (``pebench params``) can build a model for them with no
data on disk. The loaders (:mod:`pebench.data.pascal_context`, :mod:`pebench.data.nyud`)
register themselves with these very infos, so ``dataset_info`` gives the same answer whether
or not a loader is registered.

Code that builds models from an info keeps only the tasks that are registered (see
:func:`pebench.accounting.resolve_setting`).
"""

from __future__ import annotations

from pebench.data.base import DATASETS, DatasetInfo
from pebench.errors import unknown_name

PASCAL_CONTEXT = DatasetInfo(
    name="pascal-context",
    tasks=("semseg", "human_parts", "saliency", "normals", "edge"),
    # The published benchmark's four tasks (Polyhistor, MTLoRA): edge is left out.
    default_tasks=("semseg", "human_parts", "saliency", "normals"),
    # 20 object classes + background; 6 parts + background.
    num_classes={"semseg": 21, "human_parts": 7},
    default_img_size=448,
    needs_root=True,
    # The edge evaluation of ASTMT / MTI-Net (SEISM) on PASCAL-Context: the matching
    # tolerance as a fraction of the image diagonal (SEISM's maxDist).
    task_settings={"edge": {"tolerance": 0.0075}},
)

NYUD = DatasetInfo(
    name="nyud",
    tasks=("semseg", "depth", "normals", "edge"),
    default_tasks=("semseg", "depth", "normals", "edge"),
    # The 40-class labelling of Gupta et al.
    num_classes={"semseg": 40},
    default_img_size=448,
    needs_root=True,
    # The edge evaluation of MTI-Net (SEISM) on NYUD (as above).
    task_settings={"edge": {"tolerance": 0.011}},
)

KNOWN_INFOS: dict[str, DatasetInfo] = {info.name: info for info in (PASCAL_CONTEXT, NYUD)}


def dataset_info(name: str) -> DatasetInfo:
    """The info of a registered dataset, else of a known benchmark without a loader yet;
    unknown names raise the usual one-line PebenchError."""
    if name in DATASETS:
        return DATASETS.get(name).info
    if name in KNOWN_INFOS:
        return KNOWN_INFOS[name]
    raise unknown_name("dataset", name, {*DATASETS.names(), *KNOWN_INFOS},
                       hint="Run 'pebench list datasets' to see the loadable ones.")
