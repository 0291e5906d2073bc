"""Synthetic MagnaTagATune and Caltech-256, written in the real on-disk formats.

The same readers, preparers and training code then serve synthetic and real data, and tests and CPU
smoke runs need no download. MTAT clips come from a small generative model of music (scenes.py: the
latent content and the noisy tags drawn from it; music.py: its sound), written by mtat.py;
Caltech-256 images show one (shape, palette, texture) design per class (pictures.py), written by
caltech256.py.

Both writers are idempotent and resumable (common.py): `.synth.partial` claims the folder when
writing starts, every file is written atomically, and `.synth.json` (the parameters) is written last.
Randomness comes from one generator per clip or image, seeded by (seed, stream, index): the content
does not depend on `workers`, and a smaller dataset is a prefix of a larger one.
"""
from __future__ import annotations

from audio2image.datasets.synth.caltech256 import CALTECH_DIR, class_folder, synth_caltech256
from audio2image.datasets.synth.common import MARKER, PARTIAL
from audio2image.datasets.synth.music import render_clip
from audio2image.datasets.synth.mtat import mtat_plan, synth_mtat
from audio2image.datasets.synth.pictures import MAX_CLASSES, class_design, render_image
from audio2image.datasets.synth.scenes import GENRES, TAG_RULES, sample_scene, scene_tags

__all__ = ["synth_mtat", "synth_caltech256", "mtat_plan", "sample_scene", "scene_tags", "render_clip",
           "render_image", "class_design", "class_folder", "GENRES", "TAG_RULES", "MARKER", "PARTIAL", "MAX_CLASSES",
           "CALTECH_DIR"]
