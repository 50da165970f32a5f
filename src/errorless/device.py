"""The one device check: the torch device a run asked for (config key ``device``), refused in one
line when it asks for a GPU that torch does not see."""

from __future__ import annotations

import torch

from errorless.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``; ``cuda`` without a visible GPU is a :class:`ConfigError`."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "config key device: 'cuda' requested but no CUDA device is available "
            "(torch.cuda.is_available() is False); use device: cpu or a GPU node"
        )
    return torch.device(name)
