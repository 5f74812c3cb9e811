"""softswitch: a SIP feature server for subscriber services."""

__version__ = "0.1.0"
