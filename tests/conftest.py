import os
import sys
from pathlib import Path

# Test helpers (tiny stores, the local HTTP server) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("AUDIO2IMAGE_QUIET", "1")
# Tests run from the repository root so that configs/ resolves.
os.chdir(Path(__file__).resolve().parents[1])
