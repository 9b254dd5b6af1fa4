"""The `zeroshape-w` command: the top of the house, composing the backend's and the training package's
commands (each package owns its own: `backend.cli`, `training.cli`)."""
