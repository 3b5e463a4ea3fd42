"""The two analysis tools: long-range relation pictures (`relations/`) and the memory profiler (`profiling/`)."""
