"""audio2image: does pretraining a network on audio help it learn images?

The package follows the data: datasets (raw files) -> prepare (training stores) -> training (checkpoints and
transfer runs) -> sweep (results) -> report.
"""
import os

__version__ = "0.1.0"

# Large CPU tensors (a batch of 224 px images is 150 MB) on transparent huge pages: far fewer page faults, and
# CPU image augmentation ~35% faster (measured, 3,400 -> 4,500 images/s on 2 cores). torch reads this at its first
# large allocation; a value the user set wins.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
