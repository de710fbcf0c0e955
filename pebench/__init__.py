"""pebench: parameter-efficient multi-task adaptation of hierarchical ViTs to dense prediction."""

__version__ = "0.1.0"
