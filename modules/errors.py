"""Errors whose message is meant for the person using Easel.

Library code raises these with a sentence that says what went wrong and how to fix it; the UI shows
the message as is and the API returns it as JSON with a 4xx status.
"""


class UserError(Exception):
    """An error whose message is shown to the user as is."""


class ModelLoadError(UserError):
    """A checkpoint or VAE could not be read, identified or loaded."""


class ModelNotFoundError(UserError):
    """No checkpoint or VAE matches the requested name."""


class UnsafeCheckpointError(ModelLoadError):
    """A pickle checkpoint holds something other than plain tensors and was refused."""


class ModelBusyError(UserError):
    """The model (or what loads with it) is busy; the action can be tried again in a moment."""
