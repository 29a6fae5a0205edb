"""edgeres_deploy: the on-device side of edgeres.

Needs only numpy and pillow, plus tensorrt with pycuda or cuda-python (on the Jetson) or onnxruntime (anywhere).
No torch, no edgeres. Run it from an unpacked bundle's root: ``python -m edgeres_deploy verify|build|bench|predict|evaluate``.
The host (edgeres) imports the same preprocessing and TensorRT code, so both sides compute the same thing.
"""

__version__ = "0.1.0"
