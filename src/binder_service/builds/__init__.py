"""Builds: one per image, run by an executor, watched by any number of clients."""

from .build import Build, BuildStatus
from .executor import BuildJob, Executor
from .manager import BuildManager

__all__ = ["Build", "BuildJob", "BuildManager", "BuildStatus", "Executor"]
