"""Find a service's description by its name (the topic's middle part), wherever its package lives."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

import opsat
from opsat.common.service import Service


@cache
def described(name: str) -> Service | None:
    for module in pkgutil.iter_modules(opsat.__path__):
        if module.name == "common":
            continue
        try:
            service = importlib.import_module(f"opsat.{module.name}.service").SERVICE
        except ModuleNotFoundError:
            continue
        if service.name == name:
            return service
    return None
