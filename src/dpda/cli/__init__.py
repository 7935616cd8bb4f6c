"""Command-line interface: ``dpda <command> --help``."""
