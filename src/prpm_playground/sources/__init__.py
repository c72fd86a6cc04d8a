"""Package sources: where prompt packages come from."""

from .base import Package, PackageSource, PackageType

__all__ = ["Package", "PackageSource", "PackageType"]
