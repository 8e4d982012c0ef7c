"""The `xlmr-convert` command line: convert checkpoints between formats, import fairseq
releases, verify that every installed framework agrees on a checkpoint, inspect one.

Run `xlmr-convert --help` (or `python -m conversion --help`). Importing this package never
imports torch, tensorflow or jax; each command imports only what its formats need.
"""

from .cli import main

__all__ = ["main"]
