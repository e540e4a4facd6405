"""Shared fixtures."""

import pytest
import torch
from _models import random_model


@pytest.fixture(params=["llada", "dream"])
def model(request):
    return random_model(request.param)


@pytest.fixture
def one_thread():
    """One torch thread: these tensors are tiny, and intra-op threads only add synchronisation (10x slower
    on a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
