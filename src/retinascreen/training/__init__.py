"""Training and evaluating models: configuration, run directories, callbacks, metrics files."""
