"""The results store: a typed schema (results.json, metrics.json, per-backbone files), atomic writes, cache
keys, array names, streaming statistics and the exact merge of shards. Plain numpy; no torch."""
