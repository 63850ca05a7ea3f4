"""nstbot: a self-hosted Discord bot for neural style transfer."""

__version__ = "0.1.0"
