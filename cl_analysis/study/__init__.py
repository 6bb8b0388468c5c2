"""Study layer: profiles, sweeps and their results, loaded runs, the paper's numbers."""
