"""Training: the one loop (``fit``) that ``edgeres train``, the prune stage's fine-tuning and QAT all call.

Modules, from the bottom up (each imports only those above it):

============  =========================================================================================================
``config``    ``TrainConfig``
``device``    the process's rank and device, the bf16 autocast choice, ``predict_logits``
``loop``      ``fit``: the input pipeline (``make_loaders``), the schedule, the loss, checkpoints and the epoch log
``transfer``  ``train_model`` (``edgeres train``) and ``load_pretrained``
============  =========================================================================================================
"""
