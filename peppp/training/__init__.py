"""Training side of peppp: quantized networks, datasets, recipes, and training one cell (torch, qtorch)."""
