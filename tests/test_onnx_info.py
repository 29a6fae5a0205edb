"""One onnx_precision for host and device (edgeres_deploy/onnx_info.py): the protobuf's fields walked without the onnx
package, checked against the onnx package's own reading of the same files, and the files where the two old
functions disagreed (the host's detected fp16, the device's searched the file's bytes for "DequantizeLinear")."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from edgeres_deploy.onnx_info import onnx_contents, onnx_precision
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]


def _model(nodes, inits=(), functions=(), out_type=TensorProto.FLOAT, out_shape=("N", 3)):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", out_type, list(out_shape))], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                          functions=list(functions))
    m.ir_version = 8
    return m


def _scaled(dtype, name="Mul"):
    """x * w (w of ``dtype``), averaged to [N, 3]: a tiny classifier-shaped graph ONNX Runtime runs."""
    w = numpy_helper.from_array(np.full((1, 3, 1, 1), 0.5, dtype), "w")
    to = {np.float16: TensorProto.FLOAT16, np.float32: TensorProto.FLOAT}[dtype]
    return _model([helper.make_node("Cast", ["x"], ["h"], to=to), helper.make_node("Mul", ["h", "w"], ["m"], name=name),
                   helper.make_node("Cast", ["m"], ["f"], to=TensorProto.FLOAT),
                   helper.make_node("ReduceMean", ["f"], ["y"], axes=[2, 3], keepdims=0)], [w])


def _qdq():
    s, z = numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.uint8(128), "z")
    return _model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                   helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
                   helper.make_node("ReduceMean", ["d"], ["y"], axes=[2, 3], keepdims=0)], [s, z])


def _qlinear_only():
    """QOperator form (QLinearConv), no DequantizeLinear node anywhere: the old byte search said fp32."""
    x = [numpy_helper.from_array(np.asarray(v, t), n) for n, v, t in
         (("xs", 0.1, np.float32), ("xz", 0, np.uint8), ("ws", 0.1, np.float32), ("wz", 0, np.int8),
          ("ys", 0.1, np.float32), ("yz", 0, np.uint8))]
    w = numpy_helper.from_array(np.ones((3, 3, 1, 1), np.int8), "w")
    return _model([helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])],
                  [*x, w], out_type=TensorProto.UINT8, out_shape=("N", 3, 8, 8))


def _nested():
    """Q/DQ only inside an If branch, fp16 only as a Constant's value, and a model-local function's body."""
    branch = helper.make_graph([helper.make_node("DequantizeLinear", ["qq", "ss"], ["o"])], "then", [],
                               [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["o2"])], "else", [],
                              [helper.make_tensor_value_info("o2", TensorProto.FLOAT, None)])
    half = helper.make_tensor("c", TensorProto.FLOAT16, [1], np.asarray([1.0], np.float16).view(np.uint16).tolist())
    fn = helper.make_function("local", "Scale", ["a"], ["b"], [helper.make_node("MatMulInteger", ["a", "a"], ["b"])],
                              [helper.make_opsetid("", 17)])
    return _model([helper.make_node("Constant", [], ["k"], value=half),
                   helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=other)], functions=[fn])


def _reference(model: onnx.ModelProto) -> tuple:
    """(op types, element types) as the onnx package reads them: the graph, its subgraphs and functions."""
    ops, types = set(), set()

    def graph(g):
        types.update(t.data_type for t in g.initializer)
        for n in g.node:
            node(n)

    def node(n):
        ops.add(n.op_type)
        for a in n.attribute:
            if a.HasField("t"):
                types.add(a.t.data_type)
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                graph(sub)

    graph(model.graph)
    for f in model.functions:
        for n in f.node:
            node(n)
    return ops, types


CASES = {"fp32": (lambda: _scaled(np.float32), "fp32"), "fp16": (lambda: _scaled(np.float16), "fp16"),
         "qdq": (_qdq, "int8"), "qlinear": (_qlinear_only, "int8"), "nested": (_nested, "int8")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_reads_what_the_onnx_package_reads(case, tmp_path):
    make, want = CASES[case]
    model = make()
    path = tmp_path / f"{case}.onnx"
    onnx.save(model, str(path))
    assert onnx_contents(path) == _reference(model)
    assert onnx_precision(path) == want


def test_the_files_where_host_and_device_disagreed(tmp_path, tiny_onnx):
    """An FP16 file (host: fp16, device: fp32) and an FP32 file whose node name and metadata say "DequantizeLinear"
    (host: fp32, device: int8): one answer now, and the host's runner and the device's backend report it."""
    from edgeres_deploy.backends import OrtBackend

    from edgeres.runtimes import load_runtime

    fp16, named = tmp_path / "fp16.onnx", tmp_path / "named.onnx"
    onnx.save(_scaled(np.float16), str(fp16))
    m = _scaled(np.float32, name="DequantizeLinear_0")
    m.metadata_props.add(key="note", value="DequantizeLinear")
    onnx.save(m, str(named))
    assert b"DequantizeLinear" in named.read_bytes() and b"DequantizeLinear" not in fp16.read_bytes()
    for path, want in ((fp16, "fp16"), (named, "fp32"), (tiny_onnx, "fp32")):
        with OrtBackend(path) as device, load_runtime("onnxruntime", path, threads=1) as host:
            assert onnx_precision(path) == device.precision == host.precision == want, path


def test_not_an_onnx_file_is_one_clear_error(tmp_path):
    for name, data in (("empty.onnx", b""), ("text.onnx", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=f"{name}.*not .*ONNX model"):
            onnx_precision(tmp_path / name)


def _python38():
    for c in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8"))) + ["/usr/bin/python3.8"]:
        if os.path.isfile(c):
            return c
    return None


def test_runs_without_the_onnx_package_and_on_python_3_8(tmp_path):
    """The device has no onnx package (JetPack 5: Python 3.8): the reader imports only the standard library."""
    files = []
    for case, (make, want) in CASES.items():
        onnx.save(make(), str(tmp_path / f"{case}.onnx"))
        files.append((str(tmp_path / f"{case}.onnx"), want))
    script = ("import sys; sys.modules['onnx'] = None\n"
              "from edgeres_deploy.onnx_info import onnx_precision\n"
              f"got = [onnx_precision(p) for p, _ in {files!r}]\n"
              f"assert got == [w for _, w in {files!r}], got\n"
              "assert not {'onnx', 'numpy'} & set(m for m in sys.modules if sys.modules[m] is not None), 'imported'\n"
              "print('ok')\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "deploy"))
    for python in filter(None, (sys.executable, _python38())):
        proc = subprocess.run([python, "-c", script], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip() == "ok", (python, proc.stderr[-2000:])
