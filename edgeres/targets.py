"""Target profiles as data. ``edgeres targets`` lists them; ``jetson`` is an alias for the Orin family default.

Facts (see docs/design.md §4-§5): JetPack 5.1 ships TensorRT 8.5.2, JetPack 6.1/6.2 TensorRT 10.3, JetPack 7.x
TensorRT 10.13+; TensorRT 11.4 supports JetPack 7.2.2+ on AGX Orin and Thor. Orin NX and AGX Orin have 2 DLA cores,
Orin Nano none. Ampere/Blackwell Jetsons run 2:4 sparse tensor cores; the Maxwell Jetson Nano has no useful INT8.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgeres.errors import EdgeresError


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    runtime: str  # tensorrt | onnxruntime | openvino
    precisions: tuple  # allowed: int8, fp16, fp32
    quant_format: str  # "trt-qdq" (signed int8, zp 0, symmetric) | "ort-u8s8" (uint8 activations, int8 weights) | "none"
    jetpack: str | None = None
    trt_version: str | None = None  # family of the TensorRT the device ships, e.g. "8.5", "10.3", "11"
    dla_cores: int = 0
    sparsity_2_4: bool = False
    workspace_mb: int = 1024
    image_size: int = 224
    batch: int = 1
    max_batch: int = 8
    gpu: str | None = None
    notes: str = ""
    aliases: tuple = field(default=())
    # channel counts the target's fastest kernels want; pruning rounds to it (``--round-to`` overrides). The figure
    # and its source are data: see CHANNEL_SOURCES.
    channel_multiple: int = 8
    channel_source: str = ""

    @property
    def trt_family(self) -> int | None:
        return int(self.trt_version.split(".")[0]) if self.trt_version else None

    @property
    def int8(self) -> bool:
        return "int8" in self.precisions

    @property
    def implicit_int8(self) -> bool:
        """True where the TensorRT build still accepts implicit INT8 with a calibration cache (TRT < 10)."""
        return self.trt_family is not None and self.trt_family < 10

    def to_dict(self) -> dict:
        d = asdict(self)
        d["precisions"] = list(self.precisions)
        d["aliases"] = list(self.aliases)
        return d


# Where each channel multiple comes from (cited in every profile that uses it).
TRT_INT8_SOURCE = ("TensorRT Developer Guide, Performance > 'Optimizing for Tensor Cores' "
                   "(docs.nvidia.com/deeplearning/tensorrt/latest/performance/optimization.html): suggested tensor "
                   "dimension alignment for Tensor Core layers is 32 elements for INT8 (8 for FP16 dense, 4 for TF32); "
                   "an INT8 engine keeps FP16/FP32 fallback layers, whose 8 divides 32")
TRT_FP16_SOURCE = ("TensorRT Developer Guide, 'Optimizing for Tensor Cores': 8 elements for FP16 dense math; cuDNN's "
                   "Tensor Core rule 'input and output channel dimensions must be a multiple of eight' "
                   "(developer.nvidia.com/blog/programming-tensor-cores-cuda-9/)")
CPU_SIMD_SOURCE = ("oneDNN (used by ONNX Runtime's and OpenVINO's x86 CPU kernels) 'Understanding Memory Formats' "
                   "(oneapi-src.github.io/oneDNN/dev_guide_understanding_memory_formats.html): blocked layouts nChw16c "
                   "for AVX-512 (16 fp32 lanes per 512-bit register; VNNI packs 4 int8 per lane) and nChw8c for AVX2; "
                   "16 is a multiple of both")

_TARGETS = [
    Target("jetson-orin-nano", "Jetson Orin Nano 8GB (Ampere, 1024 CUDA cores, no DLA), JetPack 6", "tensorrt",
           ("int8", "fp16", "fp32"), "trt-qdq", jetpack="6.2", trt_version="10.3", dla_cores=0, sparsity_2_4=True,
           workspace_mb=1024, gpu="Ampere sm_87", channel_multiple=32, channel_source=TRT_INT8_SOURCE,
           aliases=("jetson", "orin", "orin-nano")),
    Target("jetson-orin-nx", "Jetson Orin NX 16GB (Ampere, 2 DLA cores), JetPack 6", "tensorrt",
           ("int8", "fp16", "fp32"), "trt-qdq", jetpack="6.2", trt_version="10.3", dla_cores=2, sparsity_2_4=True,
           workspace_mb=2048, gpu="Ampere sm_87", channel_multiple=32, channel_source=TRT_INT8_SOURCE, aliases=("orin-nx",)),
    Target("jetson-agx-orin", "Jetson AGX Orin 64GB (Ampere, 2 DLA cores), JetPack 6", "tensorrt",
           ("int8", "fp16", "fp32"), "trt-qdq", jetpack="6.2", trt_version="10.3", dla_cores=2, sparsity_2_4=True,
           workspace_mb=4096, gpu="Ampere sm_87", channel_multiple=32, channel_source=TRT_INT8_SOURCE, aliases=("agx-orin",)),
    Target("jetson-xavier-nx", "Jetson Xavier NX (Volta, 2 DLA cores), JetPack 5.1, TensorRT 8.5", "tensorrt",
           ("int8", "fp16", "fp32"), "trt-qdq", jetpack="5.1", trt_version="8.5", dla_cores=2, sparsity_2_4=False,
           workspace_mb=1024, gpu="Volta sm_72", notes="legacy: a TensorRT calibration cache is written too",
           channel_multiple=32, channel_source=TRT_INT8_SOURCE, aliases=("xavier-nx",)),
    Target("jetson-thor", "Jetson AGX Thor (Blackwell), JetPack 7.2+, TensorRT 11 (strongly typed)", "tensorrt",
           ("int8", "fp16", "fp32"), "trt-qdq", jetpack="7.2", trt_version="11.4", dla_cores=0, sparsity_2_4=True,
           workspace_mb=8192, gpu="Blackwell sm_110", notes="TRT 11: no implicit INT8, no INT8/FP16 builder flags",
           channel_multiple=32, channel_source=TRT_INT8_SOURCE, aliases=("thor",)),
    Target("jetson-nano", "Jetson Nano (Maxwell), JetPack 4.6, TensorRT 8.2: FP16 only, no useful INT8", "tensorrt",
           ("fp16", "fp32"), "none", jetpack="4.6", trt_version="8.2", dla_cores=0, sparsity_2_4=False,
           workspace_mb=512, gpu="Maxwell sm_53", channel_multiple=8, channel_source=TRT_FP16_SOURCE,
           aliases=("nano",)),
    Target("cuda-gpu", "Workstation / server NVIDIA GPU with TensorRT 10", "tensorrt", ("int8", "fp16", "fp32"),
           "trt-qdq", trt_version="10.13", dla_cores=0, sparsity_2_4=True, workspace_mb=4096, max_batch=64,
           channel_multiple=32, channel_source=TRT_INT8_SOURCE,
           aliases=("gpu",)),
    Target("x86-cpu", "x86-64 CPU with ONNX Runtime (VNNI/AMX INT8 fast path: uint8 activations, int8 weights)",
           "onnxruntime", ("int8", "fp32"), "ort-u8s8", channel_multiple=16, channel_source=CPU_SIMD_SOURCE,
           aliases=("cpu", "x86")),
]
TARGETS = {t.name: t for t in _TARGETS}
ALIASES = {a: t.name for t in _TARGETS for a in t.aliases}


def get_target(name: str) -> Target:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in TARGETS:
        raise EdgeresError(f"unknown target {name!r}; valid targets: {', '.join(TARGETS)} (aliases: {', '.join(sorted(ALIASES))})")
    return TARGETS[key]


# targets listed for reference whose device stack edgeres_deploy cannot serve: refused with the reason
UNSUPPORTED = {
    "jetson-nano": ("jetson-nano is not supported: JetPack 4.6 ships TensorRT 8.2 (no name-based I/O, no "
                    "execute_async_v3, no memory pools; its ONNX parser takes opset <= 13) and Python 3.6, which "
                    "the bundle's runtime does not run on. Use an Orin or Xavier target, or build the FP16 engine "
                    "yourself with trtexec on the Nano from an opset-13 export"),
}


def cannot_use(target: Target, key: str, value) -> str | None:
    """Why ``target`` cannot use option ``key`` set to ``value`` (None when it can): the one rule for a flag, a YAML
    key and a stage's own check, so that each refuses it the same way, before any work."""
    if value is None or value is False:  # not `in (None, False)`: DLA core 0 == False
        return None
    if key == "dla_core":
        if target.runtime != "tensorrt" or target.dla_cores < 1:
            return f"target {target.name} has no DLA core (DLA: Orin NX, AGX Orin, Xavier NX); build for the GPU"
        if value >= target.dla_cores:
            return f"target {target.name} has {target.dla_cores} DLA cores (0 to {target.dla_cores - 1})"
    if key == "sparsity" and not target.sparsity_2_4:
        return f"target {target.name} has no 2:4 sparse tensor cores (Orin and Thor do)"
    if key == "engine" and target.runtime != "tensorrt":
        return f"target {target.name} runs {target.runtime}, not TensorRT: no engine to build"
    return None


def require_supported(target: Target) -> None:
    if target.name in UNSUPPORTED:
        raise EdgeresError(UNSUPPORTED[target.name])


def list_targets() -> list:
    return list(_TARGETS)
