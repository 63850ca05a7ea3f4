"""Exceptions the engine raises; each message is fit to show as it is."""


class EngineError(RuntimeError):
    """Base class for engine failures."""


class WeightsError(EngineError):
    """The VGG19 weights are missing, corrupt or of the wrong layout."""


class DeviceError(EngineError):
    """The requested device does not exist or cannot be used."""


class OutOfMemoryError(EngineError):
    """The device ran out of memory; the caller may retry at a smaller size."""


class StylizeCancelled(EngineError):
    """The step callback asked the run to stop."""
