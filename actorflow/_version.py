"""The version of actorflow, in a leaf: heartbeats read it without importing the package."""

__version__ = "0.1.0.dev0"
