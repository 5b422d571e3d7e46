"""Raw django-q2 tasks: the baseline the engine is measured beside."""
import time


def stamp():
    """Return when the worker started the task (wall clock, same host as the enqueuer)."""
    return time.time()


def noop():
    return None
