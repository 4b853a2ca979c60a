"""torch's forward-mode differentiation, loaded once and quietly."""

from __future__ import annotations

import warnings

import torch
from torch.func import jvp

__all__ = ["load_forward_mode"]


_forward_mode_loaded = False


def load_forward_mode() -> None:
    """Let torch load its forward-mode decompositions, once, without its DeprecationWarning.

    torch loads them at the first forward-mode derivative of a process, through
    ``torch.jit.script``, which warns (torch >= 2.10) that torch.jit.script is
    deprecated: a warning about torch's internals that a caller can do nothing about.
    """
    global _forward_mode_loaded
    if _forward_mode_loaded:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                                category=DeprecationWarning)
        x = torch.zeros(1, dtype=torch.float64)
        jvp(torch.sin, (x,), (x,))
    _forward_mode_loaded = True
