"""The local backend: worker processes on this machine (the pipe adapter of the runtime)."""
