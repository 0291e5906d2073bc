"""The one compiled part: prepare/_melkernel.c, the mel front end's fused passes (see that file).

It is optional: where no C compiler is found, or the build fails, the package installs without it and
preparation takes the numpy path, which computes the same features (prepare/features.py says which one runs).
It is built for the machine it is installed on (-march=native), as an editable or source install does.
"""
import platform

from setuptools import Extension, setup

FLAGS = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math"]
if platform.machine().lower() in ("x86_64", "amd64"):  # F16C's conversions, AVX-512 where the CPU has it
    FLAGS += ["-march=native", "-mprefer-vector-width=512"]

setup(ext_modules=[Extension("audio2image.prepare._melkernel", ["src/audio2image/prepare/_melkernel.c"],
                             extra_compile_args=FLAGS, optional=True)])
