"""Shared pytest set-up. Real-kernel and fleet tests need root (they create namespaces)."""

from __future__ import annotations

import os

import pytest

ROOT = os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ROOT:
        return
    skip = pytest.mark.skip(reason="needs root to create network/mount namespaces")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)
