"""From saved results to numbers: per-image localisation, baselines, bootstrap aggregates, last-three and
sanity summaries (``metrics.json``). Plain numpy; no torch."""
