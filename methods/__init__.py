"""Built-in methods; each module registers its methods when imported."""

from methods import adapters, bitfit, finetuning, hypernetworks, lora  # noqa: F401
