"""Training from a spec's `train` section: data, losses, optimizers, the loop, checkpoints."""
