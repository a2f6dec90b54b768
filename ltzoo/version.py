"""ltzoo's version, in a module of its own: the code that records it (runs, cards, exports, Hub commits)
imports this, never the package front door."""

__version__ = "0.1.0"
