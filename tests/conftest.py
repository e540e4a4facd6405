"""Shared fixtures."""

import pytest

from _models import random_model


@pytest.fixture(params=["llada", "dream"])
def model(request):
    return random_model(request.param)
