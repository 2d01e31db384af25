"""The only code that speaks HTTP: shared client, rate budget, and one client per server."""
