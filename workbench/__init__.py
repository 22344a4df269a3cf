"""workbench: a notebook-first machine-learning workbench with a shared hub."""
__version__ = "0.1.0"
