"""ONNX Runtime (CPU; CUDA and TensorRT execution providers when present and asked for)."""

from __future__ import annotations

import numpy as np

from edgeres.runtimes import Runtime, RuntimeUnavailable


def onnx_precision(path) -> str:
    """int8 for a Q/DQ graph, fp16 if float16 weights appear, else fp32."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger"}:
        return "int8"
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    return "fp32"


MAX_FIXED_BATCH = 4096


def check_image_input(artifact, shape) -> None:
    """An image classifier's input is [N, 3, H, W] with a sane fixed batch; else EdgeresError naming the file."""
    from edgeres.errors import EdgeresError

    shape = list(shape)
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
        raise EdgeresError(f"{artifact} takes input of shape {shape}; edgeres runs image classifiers with input "
                           "[N, 3, H, W]: re-export the model with that input")
    if isinstance(shape[0], int) and not 1 <= shape[0] <= MAX_FIXED_BATCH:
        raise EdgeresError(f"{artifact} declares a fixed batch of {shape[0]} (more than {MAX_FIXED_BATCH}: it would not fit "
                           "in memory); re-export it with a dynamic or a small batch")
    for s in shape[2:]:
        if isinstance(s, int) and not 1 <= s <= 4096:
            raise EdgeresError(f"{artifact} declares input {shape[2]}x{shape[3]} px; a classifier input is 1 to 4096 px a side")


class OrtRuntime(Runtime):
    name = "onnxruntime"

    def __init__(self, artifact, device: str = "auto", threads: int | None = None, providers: list | None = None, **_):
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - core dependency
            raise RuntimeUnavailable(f"onnxruntime not importable: {e}") from None
        from edgeres.metrics import default_threads

        self._ort = ort
        self.threads = threads or default_threads()
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3  # errors only: no initializer-cleanup chatter
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        if providers is None:
            want_gpu = device in ("auto", "cuda") and "CUDAExecutionProvider" in available
            providers = (["CUDAExecutionProvider"] if want_gpu else []) + ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in available]
        if missing:
            raise RuntimeUnavailable(f"onnxruntime has no {', '.join(missing)} here (available: {', '.join(available)})")
        try:
            self.session = ort.InferenceSession(str(artifact), so, providers=providers)
        except Exception as e:  # noqa: BLE001
            from edgeres.errors import EdgeresError

            raise EdgeresError(f"onnxruntime cannot load {artifact}: {str(e).splitlines()[0][:300]}") from None
        self.providers = self.session.get_providers()
        self.device = "cuda" if self.providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else "cpu"
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = inp.shape
        check_image_input(artifact, inp.shape)
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.artifact = str(artifact)
        self.precision = onnx_precision(artifact)

    def run(self, x: np.ndarray) -> np.ndarray:
        want = self.input_shape[2:]
        if x.ndim == 4 and any(isinstance(w, int) and w != g for w, g in zip(want, x.shape[2:])):
            from edgeres.errors import EdgeresError

            raise EdgeresError(f"{self.artifact} takes {want[0]}x{want[1]} px images but the preprocessing gives "
                               f"{x.shape[2]}x{x.shape[3]}; pass --image-size {want[0]}")
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})[0]

    def version(self) -> str:
        return self._ort.__version__

    def describe(self) -> dict:
        d = super().describe()
        d["providers"] = self.providers
        return d
