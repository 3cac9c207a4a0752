"""pvspec's conformance layer: targets, the oracle, checks, results and reports."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("pvspec")
except _metadata.PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"
