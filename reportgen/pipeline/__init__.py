"""Orchestration: the battery run (each backbone, its cache, the index and the scores) and sharded runs.
Models are reached only through :mod:`reportgen.analysis`, imported when a backbone must be computed."""
