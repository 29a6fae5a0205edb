"""Pruning: structured channel pruning (Torch-Pruning), NVIDIA 2:4 sparsity, distillation fine-tuning, and the search
for the ratio that meets a measured latency.

Modules, from the bottom up (each imports only those above it):

=============  ========================================================================================================
``tp_rules``   edgeres's Torch-Pruning customisations: the rewritten option-A shortcut's pruner, rounding that never
               prunes a layer to nothing, channels coupled through ops Torch-Pruning cannot follow kept whole
``channels``   ``PruneConfig``, importance criteria, channel pruning by ratio or by MACs
``sparsity``   2:4 masks, and the check that an ONNX file kept the pattern
``reach``      a MACs/latency target that cannot be reached: the best reachable, what blocks the rest, exit 1
               unless ``--accept-shortfall``
``forms``      the checkpoint form a pruned model is written in, and the reload check
``finetune``   ``prune_and_finetune`` (prune, fine-tune from the unpruned teacher, write, reload-check), ``run_prune``
``latency``    ``find_ratio``: the ratio whose measured latency meets ``--target-latency-ms``/``--target-speedup``
=============  ========================================================================================================
"""
