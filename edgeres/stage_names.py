"""The names of the pipeline's stages: the one place they are spelled.

Each is a stage's folder in the run directory, its ``stage`` cell in the report and its ``--force`` word. The stage
classes (``edgeres/stages/``) take their ``name`` from here, and the library modules that read a run's rows or
folders (report, recommendation, bundle) compare against these constants, so renaming a stage or adding one is an edit
here and in ``edgeres.pipeline.STAGES`` (tests/test_stage_names.py keeps the two in step).
"""

BASELINE, PRUNE, EXPORT, QUANTIZE, ENGINE, BUNDLE = "baseline", "prune", "export", "quantize", "engine", "bundle"
DEVICE = "device"  # the --device stage, run after the others only when devices are given

STAGE_NAMES = (BASELINE, PRUNE, EXPORT, QUANTIZE, ENGINE, BUNDLE)  # the order they run in
MOST_OPTIMIZED_FIRST = (ENGINE, QUANTIZE, EXPORT, PRUNE, BASELINE)  # the recommendation's order
