"""Shared fixtures: tiny models built locally (no downloads)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def test_config():
    from model.config import load_config

    return load_config("test")


@pytest.fixture
def tiny_model(test_config):
    from model.psm import PSM

    torch.manual_seed(0)
    return PSM(test_config).eval()
