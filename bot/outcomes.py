"""The delivery outcomes live in `store.outcomes` so `mail` can return them without importing `bot`."""

from store.outcomes import Apply, Done, Fail, Outcome, Pause, Retry

__all__ = ["Apply", "Done", "Fail", "Outcome", "Pause", "Retry"]
