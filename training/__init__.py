"""Training side of ZeroShape-W: rendered data (`training.data`), the dataset and its augmentations, the losses,
the recipes and the training loop, evaluation with ZeroShape's protocol, releases and figures; `training.cli`
holds the package's commands."""
