"""Package sources: where prompt packages come from."""

from ..errors import PackageSourceUnavailable
from .base import Package, PackageSource, PackageType
from .local import LocalPackages
from .memory import InMemoryPackages
from .registry import RegistryPackages

__all__ = [
    "InMemoryPackages",
    "LocalPackages",
    "Package",
    "PackageSource",
    "PackageSourceUnavailable",
    "PackageType",
    "RegistryPackages",
]
