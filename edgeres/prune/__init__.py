"""Pruning: structured channel pruning (Torch-Pruning), NVIDIA 2:4 sparsity, distillation fine-tuning, and the search
for the ratio that meets a measured latency.

Modules, from the bottom up (each imports only those above it):

=============  ========================================================================================================
``channels``   ``PruneConfig``, importance criteria, channel pruning by ratio or by MACs
``sparsity``   2:4 masks, and the check that an ONNX file kept the pattern
``forms``      the checkpoint form a pruned model is written in, and the reload check
``finetune``   ``prune_and_finetune`` (prune, fine-tune from the unpruned teacher, write, reload-check), ``run_prune``
``latency``    ``find_ratio``: the ratio whose measured latency meets ``--target-latency-ms``/``--target-speedup``
=============  ========================================================================================================
"""
