"""One adapter per upstream protocol. Translation between protocols lives here and nowhere else."""
