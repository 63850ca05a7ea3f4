"""The Celery backend: app and wire data, the bot side (backend, watch), the worker side."""
