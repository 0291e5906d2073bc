"""audio2image: does pretraining a network on audio help it learn images?

The package follows the data: datasets (raw files) -> prepare (training stores) -> training (checkpoints and
transfer runs) -> sweep (results) -> report.
"""
__version__ = "0.1.0"
