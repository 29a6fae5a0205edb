"""Quantization-aware fine-tuning (QAT) for an INT8 file that PTQ could not bring within budget.

The PTQ file in the target's shipped form (signed Q/DQ, residual-Add rule, or x86's u8s8) fixes *where* the
quantizers sit. The PyTorch model that was exported gets the same quantizers as fake-quant with learnable scales
(LSQ: ``torch._fake_quantize_learnable_per_tensor_affine`` / ``..._per_channel_affine``), initialised from the PTQ
scales: per-tensor on each quantized layer's input, per-channel on its weights, on a shortcut Conv's output where the
Q/DQ sits there. BatchNorm is folded first, as in the export, so the weights are the ONNX file's weights. It is
fine-tuned by ``edgeres.train.loop.fit`` with the FP32 model as distillation teacher (small learning rate, 1-2
epochs), and the learned weights and scales are written back into the PTQ graph: the same Q/DQ placement, the
target's rules kept by construction (and checked again by the caller on the file that ships).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np

from edgeres.errors import EdgeresError
from edgeres.onnx_graph import consumers as _consumers
from edgeres.onnx_graph import producers as _producers
from edgeres.quant.qdq import PASS_THROUGH, drop_unused_initializers


def _module_name(onnx_node_name: str, model=None) -> str:
    """``/layer1/layer1.0/conv1/Conv`` (torch.onnx's scope names) -> ``layer1.0.conv1``: each scope is a child's
    name, sometimes prefixed by its parent's path (``layer1.0``, ``downsample.0``)."""
    parts = [p for p in onnx_node_name.split("/") if p][:-1]
    path, cur = [], model
    for part in parts:
        leaf = part.rsplit(".", 1)[-1] if "." in part else part
        for cand in (part, leaf):
            child = getattr(cur, cand, None) if cur is not None and "." not in cand else None
            if child is None and cur is not None and hasattr(cur, "_modules"):
                child = cur._modules.get(cand)
            if child is not None:
                path.append(cand)
                cur = child
                break
        else:
            return ""
    return ".".join(path)


def fold_batchnorm(model) -> int:
    """Fold each BatchNorm2d into the Conv2d before it (torchvision ResNet naming: convK/bnK, downsample.0/.1,
    the stem's conv1/bn1), as the ONNX export does; the BN becomes Identity. Returns the number folded."""
    import torch
    from torch import nn

    mods = dict(model.named_modules())
    n = 0
    for name, bn in list(mods.items()):
        if not isinstance(bn, nn.BatchNorm2d):
            continue
        parent, _, leaf = name.rpartition(".")
        if leaf.startswith("bn"):
            conv_name = (parent + "." if parent else "") + "conv" + leaf[2:]
        elif leaf.isdigit() and int(leaf) > 0:
            conv_name = (parent + "." if parent else "") + str(int(leaf) - 1)
        else:
            continue
        conv = mods.get(conv_name)
        if not isinstance(conv, nn.Conv2d):
            continue
        with torch.no_grad():
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(s.reshape(-1, 1, 1, 1))
            b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new_b = (b - bn.running_mean) * s + bn.bias
            conv.bias = nn.Parameter(new_b.clone())
        owner = mods[parent] if parent else model
        setattr(owner, leaf, nn.Identity())
        n += 1
    return n


def _qdq_params(inits, q_node) -> tuple:
    from onnx import numpy_helper

    s = numpy_helper.to_array(inits[q_node.input[1]]).astype(np.float32)
    z = numpy_helper.to_array(inits[q_node.input[2]]) if len(q_node.input) > 2 and q_node.input[2] in inits else np.int8(0)
    lo, hi = (-128, 127) if z.dtype == np.int8 else (0, 255)
    return s, z.astype(np.float32), lo, hi


def _make_modules():
    import torch
    from torch import nn

    class ActFQ(nn.Module):
        """Per-tensor fake-quant with a learnable scale (LSQ), zero-point fixed."""

        def __init__(self, scale, zp, qmin, qmax):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor([float(scale)]))
            self.register_buffer("zp", torch.tensor([float(zp)]))
            self.qmin, self.qmax = qmin, qmax

        def forward(self, x):
            g = 1.0 / math.sqrt(max(1, x[0].numel()) * self.qmax)
            return torch._fake_quantize_learnable_per_tensor_affine(x, self.scale.abs() + 1e-12, self.zp,
                                                                    self.qmin, self.qmax, g)

    class WeightFQ(nn.Module):
        """Per-output-channel symmetric fake-quant of a weight with learnable scales (a parametrization)."""

        def __init__(self, scales, qmin=-127, qmax=127):
            super().__init__()
            self.scale = nn.Parameter(torch.as_tensor(scales, dtype=torch.float32).reshape(-1).clone())
            self.register_buffer("zp", torch.zeros_like(self.scale, dtype=torch.int32))
            self.qmin, self.qmax = qmin, qmax

        def forward(self, w):
            g = 1.0 / math.sqrt(max(1, w[0].numel()) * self.qmax)
            return torch._fake_quantize_learnable_per_channel_affine(w, self.scale.abs() + 1e-12, self.zp.float(), 0,
                                                                     self.qmin, self.qmax, g)

    return ActFQ, WeightFQ


def _weight_quantizer(n, m, mname: str, inits: dict, producer: dict, consumers: dict, WeightFQ):
    """The weight quantizer of module ``m`` for ONNX layer ``n`` (per-channel scales from the file's weight DQ), its
    bias set to the file's (NNCF's bias correction included); None when the layer's weight is not quantized."""
    import torch
    from onnx import numpy_helper

    wdq = producer.get(n.input[1])
    if wdq is None or wdq.op_type != "DequantizeLinear" or wdq.input[0] not in inits:
        return None
    wq = numpy_helper.to_array(inits[wdq.input[0]])
    if tuple(wq.shape) != tuple(m.weight.shape):
        raise EdgeresError(f"QAT: layer {n.name} of the ONNX file does not match {mname} of the PyTorch model "
                           f"({tuple(wq.shape)} vs {tuple(m.weight.shape)}); give the model that was exported")
    ws = numpy_helper.to_array(inits[wdq.input[1]]).astype(np.float32)
    ws = np.broadcast_to(ws.reshape(-1), (wq.shape[0],)).copy()
    bias_at = _bias_input(n, consumers, inits)
    if bias_at is not None and m.bias is not None:  # start from the file's bias (NNCF's bias correction included)
        b = numpy_helper.to_array(inits[bias_at[0].input[bias_at[1]]]).reshape(-1)
        if b.shape == tuple(m.bias.shape):
            with torch.no_grad():
                m.bias.copy_(torch.from_numpy(b.astype(np.float32)))
    return WeightFQ(ws)


def _input_quantizer(n, producer: dict):
    """The QuantizeLinear that quantizes layer ``n``'s input: DQ <- Q, possibly through MaxPool/Flatten & co."""
    p = producer.get(n.input[0])
    while p is not None and p.op_type in PASS_THROUGH:
        p = producer.get(p.input[0])
    if p is not None and p.op_type == "DequantizeLinear":
        q = producer.get(p.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            return q
    return None


def attach_fake_quant(model, qmodel) -> dict:
    """Put the Q/DQ graph's quantizers on ``model`` (BN folded). Returns {"layers": {onnx name: module name},
    "act": {Q node name: ActFQ}, "weights": {onnx name: WeightFQ}, "hooks": [...]}."""
    from torch import nn
    from torch.nn.utils import parametrize

    ActFQ, WeightFQ = _make_modules()
    inits = {i.name: i for i in qmodel.graph.initializer}
    producer, consumers = _producers(qmodel), _consumers(qmodel)
    mods = dict(model.named_modules())
    fq = nn.ModuleDict()
    layers, weights, hooks, act_for = {}, {}, [], {}

    def act(qn):
        key = str(len(act_for)) if qn.name not in act_for else act_for[qn.name]
        if qn.name not in act_for:
            s, z, lo, hi = _qdq_params(inits, qn)
            fq[f"a{key}"] = ActFQ(float(s.reshape(-1)[0]), float(z.reshape(-1)[0]), lo, hi)
            act_for[qn.name] = key
        return fq[f"a{act_for[qn.name]}"]

    for n in qmodel.graph.node:
        if n.op_type not in ("Conv", "Gemm") or len(n.input) < 2:
            continue
        mname = _module_name(n.name, model)
        m = mods.get(mname)
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        wfq = _weight_quantizer(n, m, mname, inits, producer, consumers, WeightFQ)
        if wfq is None:
            continue
        parametrize.register_parametrization(m, "weight", wfq)
        weights[n.name] = wfq
        layers[n.name] = mname
        q = _input_quantizer(n, producer)
        if q is not None:
            a = act(q)
            hooks.append(m.register_forward_pre_hook(lambda _m, args, a=a: (a(args[0]),) + tuple(args[1:])))
    # a Q/DQ on a Conv's output (the shortcut Conv of a downsample block, kept quantized by the Add rule)
    for q in qmodel.graph.node:
        if q.op_type != "QuantizeLinear" or q.input[0] in inits:
            continue
        src = producer.get(q.input[0])
        if src is not None and src.name in layers:
            a = act(q)
            hooks.append(mods[layers[src.name]].register_forward_hook(lambda _m, _i, out, a=a: a(out)))
    model.edgeres_fake_quant = fq  # registered as a submodule: its scales are trained with the weights
    return {"layers": layers, "act": {k: fq[f"a{v}"] for k, v in act_for.items()}, "weights": weights, "hooks": hooks}


def _bias_input(n, consumers: dict, inits: dict):
    """(node, input index) holding layer ``n``'s float bias: its own third input, or — for an x86 Gemm whose bias was
    moved out so it fuses into QGemm (x86_rules.split_gemm_bias) — the initializer input of the Add after it."""
    if len(n.input) > 2 and n.input[2]:
        return n, 2
    users = consumers.get(n.output[0], [])
    if n.op_type == "Gemm" and len(users) == 1 and users[0].op_type == "Add":
        add = users[0]
        for i, name in enumerate(add.input):
            if name != n.output[0] and name in inits:
                return add, i
    return None


def write_back(qmodel, model, fq: dict):
    """A copy of the Q/DQ graph with the fine-tuned weights (quantized with the learned per-channel scales),
    biases and activation scales."""
    import torch
    from onnx import numpy_helper
    from torch.nn.utils import parametrize

    out = copy.deepcopy(qmodel)
    inits = {i.name: i for i in out.graph.initializer}
    producer, consumers = _producers(out), _consumers(out)
    mods = dict(model.named_modules())
    new = []
    for n in out.graph.node:
        if n.name not in fq["layers"]:
            continue
        m = mods[fq["layers"][n.name]]
        wfq = fq["weights"][n.name]
        with torch.no_grad():
            w = m.parametrizations.weight.original.detach().float()
            s = wfq.scale.detach().abs().float() + 1e-12
            wq = torch.clamp(torch.round(w / s.reshape(-1, *([1] * (w.dim() - 1)))), -127, 127).to(torch.int8).numpy()
        wdq = producer[n.input[1]]
        tag = n.name.replace("/", "_")
        new += [numpy_helper.from_array(wq, f"{tag}_qat_w"),
                numpy_helper.from_array(s.numpy().astype(np.float32).reshape(numpy_helper.to_array(inits[wdq.input[1]]).shape),
                                        f"{tag}_qat_ws")]
        wdq.input[0], wdq.input[1] = f"{tag}_qat_w", f"{tag}_qat_ws"
        bias_at = _bias_input(n, consumers, inits)
        if bias_at is not None and m.bias is not None:
            new.append(numpy_helper.from_array(m.bias.detach().float().numpy(), f"{tag}_qat_b"))
            bias_at[0].input[bias_at[1]] = f"{tag}_qat_b"
    for qname, a in fq["act"].items():
        q = next(x for x in out.graph.node if x.name == qname)
        scale = np.asarray(float(a.scale.detach().abs()) + 1e-12, np.float32).reshape(
            numpy_helper.to_array(inits[q.input[1]]).shape)
        sname = f"{qname}_qat_s"
        new.append(numpy_helper.from_array(scale, sname))
        for node in [q] + [c for c in consumers.get(q.output[0], []) if c.op_type == "DequantizeLinear"]:
            node.input[1] = sname
    out.graph.initializer.extend(new)
    drop_unused_initializers(out)
    _ = parametrize  # (the parametrizations stay on the PyTorch model; it is thrown away)
    return out


def make_qat(model_path, splits, work_dir, epochs: int = 1, lr: float = 1e-5, batch_size: int = 32,
             kd_alpha: float = 0.9, kd_temperature: float = 2.0, trust_model: bool = False, max_steps: int | None = None,
             log=None):
    """A callable for ``quantize_within_budget``'s QAT step: pre -> (qmodel -> (fine-tuned qmodel, info))."""

    def with_pre(pre):
        def run(qmodel):
            import time

            import torch

            from edgeres.models import load_model
            from edgeres.train.config import TrainConfig
            from edgeres.train.loop import fit

            t0 = time.time()
            lm = load_model(model_path, trust_model=trust_model)
            if not isinstance(lm.model, torch.nn.Module) or isinstance(lm.model, torch.jit.ScriptModule):
                raise EdgeresError(f"QAT needs a trainable PyTorch model; {model_path} is TorchScript")
            teacher = copy.deepcopy(lm.model).eval()
            student = lm.model
            fold_batchnorm(student)
            fq = attach_fake_quant(student, qmodel)
            if not fq["layers"]:
                raise EdgeresError(f"QAT: no layer of the ONNX file maps to {model_path} (layer names differ)")
            cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0, label_smoothing=0.0,
                              warmup_epochs=0.0, kd_alpha=kd_alpha, kd_temperature=kd_temperature,
                              max_steps_per_epoch=max_steps, min_scale=0.6)
            wd = Path(work_dir)
            wd.mkdir(parents=True, exist_ok=True)
            res = fit(student, splits, pre, cfg, wd / "qat.pt", lm.meta, teacher=teacher, progress=log is not None)
            for h in fq["hooks"]:
                h.remove()
            out = write_back(qmodel, student, fq)
            for p in wd.glob("qat*"):
                p.unlink()  # the fake-quant checkpoints are not an artifact: the Q/DQ file is
            return out, {"epochs": epochs, "lr": lr, "kd_alpha": kd_alpha, "layers": len(fq["layers"]),
                         "activation_quantizers": len(fq["act"]), "torch_val_top1": res.get("last_top1"),
                         "seconds": round(time.time() - t0, 1)}

        return run

    return with_pre
