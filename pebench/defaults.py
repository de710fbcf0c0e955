"""The run options' defaults, shown by the command line's help without importing what a run
needs (torch, timm, the registries)."""

DEFAULT_STEPS = 300
DEFAULT_BATCH_SIZE = 8
DEFAULT_LR = 1e-3  # for the methods that declare no default_lr of their own
DEFAULT_CHECKPOINT_MINUTES = 10.0
