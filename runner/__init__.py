"""runner: run small, untrusted Python job scripts on a schedule in locked-down Docker containers."""

__version__ = "0.1.0"
