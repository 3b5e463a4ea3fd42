"""The shipped YAML configs and the code that composes them into one typed root config (compose.py)."""
