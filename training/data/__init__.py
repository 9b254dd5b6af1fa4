"""Synthetic training data: objects, geometry supervision and Blender renders."""
