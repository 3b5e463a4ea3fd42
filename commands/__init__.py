"""The command layer: the glue of each `run.py` command (arguments, config, printing) over library code."""
