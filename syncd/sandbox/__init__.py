"""Faithful simulators of both servers, fault injection and seed data (loopback only)."""
