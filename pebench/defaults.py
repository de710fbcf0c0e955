"""The run options' defaults, shown by the command line's help without importing what a run
needs (torch, timm, the registries)."""

DEFAULT_STEPS = 300
DEFAULT_BATCH_SIZE = 8
DEFAULT_LR = 1e-3  # for the methods that declare no default_lr of their own
DEFAULT_CHECKPOINT_MINUTES = 10.0

# The choices of two run options (the modules that use them import torch).
PRECISIONS = ("fp32", "bf16", "fp16")
EVAL_RESOLUTIONS = ("input", "original")  # where the meters see the validation labels
