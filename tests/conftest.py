import os

from hypothesis import HealthCheck, settings

# Kernels run in worker threads in production; CI has 2 cores, so examples stay few and undeadlined.
settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_asyncio_loop_factories(config, item):
    """Every async test runs on asyncio's loop and on uvloop (when installed): users run both."""
    import asyncio

    factories = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError:
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories
