"""ltzoo: an inference-ready model zoo for long-tailed image recognition."""

__version__ = "0.1.0"
