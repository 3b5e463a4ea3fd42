"""The command layer behind run.py: argument glue that calls the library modules."""
