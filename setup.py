"""Build the C decoders in ``src/vigil/native`` (one extension module per ``_*.c`` file,
sharing the bounds-checked helpers of ``_common.h``).

Everything else about the package is in pyproject.toml; setuptools needs this file only
because extension modules cannot be declared there.
"""

from pathlib import Path

from setuptools import Extension, setup

NATIVE = Path("src/vigil/native")

setup(
    ext_modules=[
        Extension(
            f"vigil.native.{src.stem}",
            [src.as_posix()],
            depends=[(NATIVE / "_common.h").as_posix()],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-fno-strict-aliasing"],
        )
        for src in sorted(NATIVE.glob("_*.c"))
    ],
)
