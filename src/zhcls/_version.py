"""The package version, importable by every layer without the package face."""

__version__ = "0.1.0"
