"""Model repositories as checked artifacts: a digest manifest, a signature, optional encryption at rest."""
