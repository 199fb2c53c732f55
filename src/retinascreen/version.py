"""The package's version (vocabulary: any layer may import it without loading the package API)."""

__version__ = "0.1.0"
