"""Torch-free dataset readers: every format becomes a `Manifest` of `Item`s."""

from mos.data.manifest import Item, Manifest, Target

__all__ = ["Item", "Manifest", "Target"]
