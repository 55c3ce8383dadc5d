"""tasktide: an event-driven task system whose every concern is a small CloudEvents function."""

__version__ = "0.1.0"
