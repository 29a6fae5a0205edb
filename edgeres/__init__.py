"""edgeres: prune, quantize and deploy ResNet classifiers to edge devices.

Importing the package is cheap: heavy libraries (torch, onnx, nncf, tensorrt) are imported by the modules that use them.
"""

__version__ = "0.1.0"
