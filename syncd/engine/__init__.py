"""The sync core: pure decisions over canonical records (no HTTP, no SQL)."""
