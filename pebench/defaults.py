"""The run options' defaults, shown by the command line's help without importing what a run
needs (torch, timm, the registries)."""

DEFAULT_STEPS = 300
DEFAULT_BATCH_SIZE = 8
DEFAULT_LR = 1e-3  # for the methods that declare no default_lr of their own
# The parameter-efficient methods' rate, and the frozen backbone's, so that a method's gain
# over the frozen backbone is its encoder's and not its decoders' rate. Parameter-efficient
# methods commonly train at higher rates than full fine-tuning; on the embedded benchmark
# (seed 0, 300 steps, 2026-12-03) 1e-2 beat 1e-3 on every task for LoRA (semseg 30.50 ->
# 35.18, parts 12.42 -> 15.33), BitFit (28.85 -> 31.93, 11.95 -> 13.56), Compacter (27.74 ->
# 32.62, 11.70 -> 15.84), the Houlsby and Pfeiffer adapters, and 3e-3 did for the PHM adapter
# and VPT-shallow too; the frozen backbone gained only on semseg (28.58 -> 29.98).
PEFT_LR = 1e-2
DEFAULT_CHECKPOINT_MINUTES = 10.0

# The choices of two run options (the modules that use them import torch).
PRECISIONS = ("fp32", "bf16", "fp16")
EVAL_RESOLUTIONS = ("input", "original")  # where the meters see the validation labels
