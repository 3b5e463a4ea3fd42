"""The command layer: the glue behind `run.py`'s commands (arguments, config sections, printing)."""
