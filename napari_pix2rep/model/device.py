"""Choose the torch device: CUDA, then Apple MPS, then CPU, unless the user says otherwise."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """Names of the devices that exist on this machine, best first (always ends with "cpu")."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """Turn "auto" / "cpu" / "cuda" / "cuda:1" / "mps" into a ``torch.device``.

    "auto" (or None) picks the first of :func:`available_devices`. Asking for a device
    that does not exist raises ``ValueError`` with one clear sentence.
    """
    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        return torch.device(available_devices()[0])
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise ValueError(f"Unknown device {name!r}: use one of {', '.join(DEVICE_CHOICES)}.")
    if kind not in available_devices():
        raise ValueError(
            f"Device {name!r} is not available here; available: {', '.join(available_devices())}."
        )
    return torch.device(name)


def release_memory(device: torch.device) -> None:
    """Give cached accelerator memory back to the system after a job ends."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()
