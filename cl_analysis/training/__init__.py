"""Training layer: run configuration, data, augmentation, models, memory bank, the pretrain loop.

Imports only the analysis core (``losses``, ``gradients``, ``metrics``, ``registry``) below it.
"""
