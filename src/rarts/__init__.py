"""rarts: differentiable neural architecture search (RARTS, DARTS, MiLeNAS) in the DARTS cell space."""

__version__ = "0.1.0"
