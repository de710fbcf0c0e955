"""Built-in methods; each module registers its methods when imported."""

from methods import finetuning, hypernetworks  # noqa: F401
