"""The error a regional prompt's settings raise: a sentence naming the setting and the fix."""

from modules.errors import UserError


class RegionalPromptError(UserError):
    """Regional Prompter settings Easel cannot run (a bad argument, a mode it does not have, a
    prompt whose regions do not match the layout); the message names the setting."""
