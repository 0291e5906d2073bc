"""What makes a run repeatable, and what its result.json records of it.

Runs are seeded (the network's init, the data order, the training subset, every augmentation draw), so the same
run on the same machine gives the same numbers as long as the kernels do. `deterministic=true` asks that of the
kernels too: torch's deterministic algorithms (an operation without one stops the run with torch's error naming
it), cuDNN without benchmarking (which picks among algorithms by timing them, run by run) and, on the CPU, a fixed
thread count (fit_threads changes the count with the machine's load, and with it the summation order: run.py asks
`fits_threads`). cuBLAS needs its workspace configured before its first call, so `prepare_environment` sets
CUBLAS_WORKSPACE_CONFIG when a command has read its config, before any CUDA work.

    >>> with deterministic(config):
    ...     train(...)
"""
from __future__ import annotations

import os
from contextlib import contextmanager

# the workspace settings under which cuBLAS gives the same results on every call (NVIDIA's cuBLAS docs: results
# reproducibility); the first is what torch's error message asks for
CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")


def prepare_environment(config) -> None:
    """Set CUBLAS_WORKSPACE_CONFIG for a deterministic config (a deterministic value the user set is kept); child
    processes (the sweep's runs) inherit it."""
    if config.deterministic and os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in CUBLAS_DETERMINISTIC:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC[0]


@contextmanager
def deterministic(config):
    """Within: torch's deterministic algorithms and no cuDNN benchmarking when the config asks for them; torch's
    previous settings come back after, so that other runs of the same process are as they were configured."""
    if not config.deterministic:
        yield
        return
    import torch

    prepare_environment(config)
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]


def fits_threads(config, device) -> bool:
    """Whether a run fits its CPU thread count to the machine's load (training/cores.py): on the CPU with
    fit_threads, unless deterministic, which keeps the count fixed."""
    return device.type == "cpu" and config.fit_threads and not config.deterministic


def provenance(config) -> dict:
    """For result.json: whether the run was deterministic, and the versions of the code that computed it."""
    import timm
    import torch

    from audio2image import __version__

    return {"deterministic": config.deterministic,
            "versions": {"audio2image": __version__, "torch": torch.__version__, "timm": timm.__version__}}
