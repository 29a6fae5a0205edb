"""The pipeline's stages, one class per module: baseline, prune, export, quantize, engine, bundle (their order:
edgeres.pipeline.STAGES). A stage reads earlier stages' artifacts from the Context and calls the library packages
(edgeres.prune, edgeres.onnx_export, edgeres.quant, edgeres.engine_build, edgeres.bundle) for the work itself."""
