"""Built-in methods; each module registers its methods when imported."""

from methods import (  # noqa: F401
    adapters,
    bitfit,
    compacter,
    ditask,
    finetuning,
    hypernetworks,
    lora,
    mtlora,
    peft_tuner,
    tadformer,
    vpt,
)
