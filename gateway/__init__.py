"""The shell of the plant-floor safety gateway: config, supervisor, I/O, northbound, status page.

Not a certified safety system: it removes permissives and never bypasses a hardware trip.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edge-safety-gateway")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
