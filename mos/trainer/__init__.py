"""The PyTorch trainer: config, batches, losses, loop, checkpoints and plots (`mos train`)."""
