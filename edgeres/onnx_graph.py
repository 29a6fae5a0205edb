"""The two maps every ONNX graph rule starts from: which node produces a tensor, and which nodes read it."""

from __future__ import annotations


def producers(model) -> dict:
    """{tensor name: the node that outputs it}."""
    return {o: n for n in model.graph.node for o in n.output}


def consumers(model) -> dict:
    """{tensor name: [the nodes that take it as an input, in graph order]}."""
    out: dict = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out
