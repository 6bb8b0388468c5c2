"""Evaluation layer: frozen features, the paper's linear probe, kNN and the embedding metrics."""
