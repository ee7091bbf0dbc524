"""Training: LightningModules and the loops that configure them."""
