"""Training side of ZeroShape-W: recipes now; data rendering, losses and the loop build on them."""
