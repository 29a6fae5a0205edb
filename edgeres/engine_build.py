"""TensorRT engine build on the host: the build spec for a target (precisions, batch profile, DLA, 2:4), the equivalent
trtexec line, and the build where TensorRT and a CUDA device are present (otherwise StageSkipped with the reason and
the trtexec line to run on the device).

The build itself is ``edgeres_deploy.trt.build_engine``: the same code the bundle runs on the Jetson.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from edgeres_deploy.trt import BuildSpec, for_dla, trtexec_command

from edgeres.errors import EdgeresError, StageSkipped, Unavailable


def build_spec(onnx_path, engine_path, target, pre, input_name: str = "input", dla_core: int | None = None,
               sparsity: bool = False, calib_cache: str | None = None, int8: bool | None = None,
               timing_cache: str | None = None, fixed_batch: int | None = None,
               input_shape: tuple | None = None) -> BuildSpec:
    """The BuildSpec for ``target``: precisions, workspace, batch profile, DLA and 2:4 checked against the profile."""
    from edgeres.targets import require_supported

    if target.runtime != "tensorrt":
        raise EdgeresError(f"target {target.name} runs {target.runtime}, not TensorRT: no engine to build")
    require_supported(target)
    if dla_core is not None:
        from edgeres_deploy.trt_api import dla_problem

        # the hardware first (Thor, Orin Nano: no DLA), then the TensorRT the target ships (11.0-11.3: none)
        severity, why = dla_problem("10" if target.dla_cores < 1 else target.trt_version or "10", target.dla_cores,
                                    qdq=False)
        if severity == "refuse":
            raise EdgeresError(f"--dla-core {dla_core} refused for target {target.name} ({target.dla_cores} DLA cores): {why}")
        if dla_core >= target.dla_cores:
            raise EdgeresError(f"target {target.name} has {target.dla_cores} DLA cores; --dla-core {dla_core} is not one of them")
    if sparsity and not target.sparsity_2_4:
        raise EdgeresError(f"target {target.name} has no 2:4 sparse tensor cores")
    if int8 is None:
        int8 = target.int8 and _is_qdq(onnx_path) or bool(calib_cache)
    if int8 and not target.int8:
        raise EdgeresError(f"target {target.name} has no useful INT8; build an FP16 engine from the FP32 export")
    batch = (fixed_batch, fixed_batch, fixed_batch) if fixed_batch else (1, target.batch, target.max_batch)
    spec = BuildSpec(onnx=str(onnx_path), engine=str(engine_path), input_name=input_name,
                     input_shape=tuple(input_shape or (3, pre.size, pre.size)), batch=batch, int8=int8, fp16="fp16" in target.precisions,
                     dla_core=dla_core, sparsity=sparsity, workspace_mb=target.workspace_mb,
                     timing_cache=timing_cache, calib_cache=calib_cache, trt_family=target.trt_family or 10,
                     dynamic=not fixed_batch)
    return for_dla(spec, dla_core) if dla_core is not None else spec


def _is_qdq(onnx_path) -> bool:
    from edgeres_deploy.onnx_info import onnx_precision

    return onnx_precision(onnx_path) == "int8"


def _onnx_io(onnx_path) -> tuple[str, int | None, tuple | None]:
    """The ONNX input's name, its fixed batch (None when dynamic) and its C, H, W when all fixed: TensorRT refuses a
    profile that disagrees with the network's fixed dimensions, so these, not the preprocess size, shape the profile
    and the trtexec line. One read of the file (the graph only, no external weights)."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in m.graph.input[0].type.tensor_type.shape.dim]
    chw = tuple(dims[1:]) if len(dims) == 4 and all(dims[1:]) else None
    return m.graph.input[0].name, (dims[0] if dims else None), chw


def onnx_build_spec(onnx_path, engine_path, target, pre, dla_core: int | None = None, sparsity: bool = False,
                    **kw) -> BuildSpec:
    """``build_spec`` with the input name, fixed batch and C, H, W read from the ONNX file itself: what the engine
    stage, the pipeline's bundle and `edgeres deploy` all build from."""
    name, fixed, chw = _onnx_io(onnx_path)
    return build_spec(onnx_path, engine_path, target, pre, input_name=name, dla_core=dla_core, sparsity=sparsity,
                      fixed_batch=fixed, input_shape=chw, **kw)


def trtexec_line(spec: BuildSpec) -> str:
    return " ".join(shlex.quote(a) for a in trtexec_command(spec))


def bundle_trtexec_line(spec: BuildSpec) -> str:
    """The trtexec line to run in the unpacked bundle on the device: the bundle's own relative file names."""
    from dataclasses import replace

    return trtexec_line(replace(spec, onnx="model.onnx", engine="model.engine", timing_cache="timing.cache",
                                calib_cache="calib.cache" if spec.calib_cache else None))


def run_engine(onnx_path, engine_path, target, pre, classes: list | None = None, dla_core: int | None = None,
               sparsity: bool = False, calib_cache: str | None = None, log=None) -> dict:
    """Build the engine -> {"note", "trtexec": line, "spec", "sidecar"}; where TensorRT cannot build it here, raise
    Unavailable(why) (no TensorRT, no CUDA) or StageSkipped(why) (TensorRT refused the build) whose ``info`` holds the
    trtexec line to run on the device.

    A Jetson target built anywhere but on a Jetson is a labelled host proxy: built for this host's GPU (without DLA,
    which a host has not), its sidecar's ``device`` says so, and the note tells that the Jetson's own engine is built
    on the Jetson. A failed build is ``skipped`` with TensorRT's reason: it never fails the pipeline.
    """
    from dataclasses import replace

    from edgeres_deploy.trt import build_engine, on_jetson

    from edgeres.runtimes.base import device_errors

    timing = str(Path(engine_path).with_name("timing.cache"))
    spec = onnx_build_spec(onnx_path, engine_path, target, pre, dla_core=dla_core, sparsity=sparsity,
                           calib_cache=calib_cache if calib_cache and target.implicit_int8 and not _is_qdq(onnx_path) else None,
                           timing_cache=timing)
    own = not target.name.startswith("jetson")  # cuda-gpu: this host's GPU is the target, not a stand-in for one
    if own:
        spec = _host_family(spec)
    # a Jetson's engine is built on the device, in the unpacked bundle: its line names the bundle's own files
    line = trtexec_line(spec) if own else bundle_trtexec_line(spec)
    meta = {"classes": list(classes or []), "preprocess": pre.to_dict(), "target": target.name}
    build, note = spec, ""
    proxy = not own and not on_jetson()
    if proxy:
        build = replace(spec, dla_core=None)
    try:
        with device_errors():
            if proxy:
                from edgeres_deploy.cuda_mem import cuda_device_name
                from edgeres_deploy.trt import import_tensorrt

                import_tensorrt()  # the reason to give first where TensorRT is missing

                gpu = cuda_device_name()
                meta.update(host_proxy=True, device=f"host proxy: {gpu} (not a {target.name})")
                note = (f"host proxy on {gpu}: this engine is for this host's GPU, not the {target.name}'s"
                        + (f" (no DLA here; --dla-core {dla_core} applies on the device)" if dla_core is not None else "")
                        + f"; on the device: {line}")
            sidecar = build_engine(build, extra_meta=meta, log=log or logging.getLogger(__name__).info)
        if own:
            note = f"built and measured on this host's {sidecar.get('device')}: the {target.name} target itself"
    except Unavailable as e:
        raise Unavailable(str(e), runtime="tensorrt", info={"trtexec": line, "spec": spec}) from None
    except (RuntimeError, ValueError) as e:
        raise StageSkipped(f"TensorRT build failed here ({e})", info={"trtexec": line, "spec": spec}) from None
    return {"note": note, "trtexec": line, "spec": spec, "sidecar": sidecar}


def _host_family(spec: BuildSpec) -> BuildSpec:
    """The spec for the TensorRT installed here (`pip install tensorrt` gives the newest: 11.x is strongly typed),
    not the target profile's nominal family: the engine and its trtexec line are this host's own."""
    from dataclasses import replace

    from edgeres_deploy.trt import import_tensorrt, version_family

    from edgeres.runtimes.base import device_errors

    try:
        with device_errors():
            return replace(spec, trt_family=version_family(import_tensorrt().__version__))
    except Unavailable:
        return spec
