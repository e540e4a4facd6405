"""Cache policies: what each forward recomputes (they plan; attention itself is the model's,
``dllm.models.attention``).

``dllm.caches.get("none")`` builds a policy by name; ``names()`` lists them.
"""

from dllm.registry import Registry

_registry = Registry("cache")
register = _registry.register
get = _registry.get
names = _registry.names
describe = _registry.describe

from .base import Cache, StepPlan  # noqa: E402
from .block_cache import BlockCache  # noqa: E402
from .dkv import DKVDecodeCache, DKVGreedyCache  # noqa: E402
from .dual import DualCache  # noqa: E402
from .elastic import ElasticCache  # noqa: E402
from .none import NoCache  # noqa: E402
from .prefix import PrefixCache  # noqa: E402

__all__ = [
    "BlockCache",
    "Cache",
    "DKVDecodeCache",
    "DKVGreedyCache",
    "DualCache",
    "ElasticCache",
    "NoCache",
    "PrefixCache",
    "StepPlan",
    "describe",
    "get",
    "names",
    "register",
]
