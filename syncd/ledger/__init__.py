"""The SQLite ledger: the only code that writes SQL."""
