"""Long-range frame relations of attention blocks: the numbers, the pictures, `run.py visualize`."""
