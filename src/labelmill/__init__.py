"""labelmill: a self-hosted, open data-labeling platform."""

__version__ = "0.1.0"
