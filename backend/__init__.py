"""ZeroShape-W inference backend: the model, its checkpoints and (later) the pipeline and server."""
