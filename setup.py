"""Build of the C engine (metaflow_profiler._native); everything else is in pyproject.toml.

The viewer/ folder ships inside the package as metaflow_profiler._viewer so the
card can be rendered from an installed wheel.
"""

import glob
import os

from setuptools import Extension, setup

SUBSYSTEMS = ["profile", "python", "sampler", "timeline", "tracer", "heap"]
SOURCES = ["native/module.c", *sorted(f for d in SUBSYSTEMS for f in glob.glob(f"native/{d}/*.c"))]

# MFP_SANITIZE=1 builds the extension with AddressSanitizer and UBSan, for
# stress tests run with LD_PRELOAD of libasan (see tests/unit/test_heap.py).
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"] if os.environ.get(
    "MFP_SANITIZE"
) else []

# MFP_PORTABLE=1 builds as for an interpreter whose internals we do not know
# (native/python/layout.h): public C API only. For the tests of that path.
PORTABLE = [("MFP_PORTABLE", "1")] if os.environ.get("MFP_PORTABLE") else []

setup(
    packages=[
        "metaflow_profiler",
        "metaflow_profiler.backends",
        "metaflow_profiler._viewer",
        "metaflow_profiler._viewer.panels",
        "metaflow_extensions.profiler",
        "metaflow_extensions.profiler.plugins",
        "metaflow_extensions.profiler.plugins.cards.profile_card",
    ],
    package_dir={"": "src", "metaflow_profiler._viewer": "viewer"},
    package_data={"metaflow_profiler._viewer": ["*.html", "*.css", "*.js", "*.md"],
                  "metaflow_profiler._viewer.panels": ["*.js", "*.css"]},
    ext_modules=[
        Extension(
            "metaflow_profiler._native",
            SOURCES,
            include_dirs=["native"],
            define_macros=[("_GNU_SOURCE", "1"), *PORTABLE],
            extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra", "-fno-strict-aliasing",
                                *SANITIZE],
            extra_link_args=SANITIZE,
            libraries=["dl", "pthread", "m"],
        )
    ],
)
