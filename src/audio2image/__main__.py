"""`python -m audio2image ...`, which torchrun needs to start a distributed run."""
from audio2image.cli import main

main()
