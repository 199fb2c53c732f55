"""Select the Keras backend before Keras is imported: TensorFlow unless KERAS_BACKEND is set.

It also caps oneDNN (TensorFlow's CPU kernels) at AVX2 on x86-64. oneDNN 3.7 as bundled with
TensorFlow 2.20-2.21 has an AVX-512 kernel, ``jit_avx512_common_1x1_convolution_bwd_weights``,
that corrupts the heap (``munmap_chunk(): invalid pointer``, a segfault) when it computes the
filter gradient of a strided 1x1 convolution at some odd batch sizes (batch 1, 3, 5 of a 30x30x8
input, stride 2): the residual convolutions of mini_xception, Xception and ResNet. The cap
makes oneDNN pick its AVX2 kernels, which are correct; it changes nothing on CPUs without
AVX-512 and costs little on those with it (``bench/onednn_isa.py``). A value the user has set
(``ONEDNN_MAX_CPU_ISA=DEFAULT`` to lift the cap) is kept. oneDNN reads it at its first kernel,
so it works even if TensorFlow was imported first. See ``docs/design.md``, "oneDNN and AVX-512".
"""

from __future__ import annotations

import os
import platform

ONEDNN_ISA_VARIABLE = "ONEDNN_MAX_CPU_ISA"
SAFE_ONEDNN_ISA = "AVX2"


def ensure_backend() -> None:
    """Default Keras to TensorFlow, quiet its C++ start-up logs, cap oneDNN at AVX2 on x86-64."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if platform.machine().lower() in ("x86_64", "amd64"):
        os.environ.setdefault(ONEDNN_ISA_VARIABLE, SAFE_ONEDNN_ISA)
