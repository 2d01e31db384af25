"""syncd: bidirectional sync between Click Maint and mantenimiento."""

__version__ = "0.1.0"
