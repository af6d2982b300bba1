import os
import random
import zlib

import jax
import jax.random as jr
import pytest


jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def getkey(request):
    """Returns a function giving a fresh PRNG key on each call; the seed shows in failures.

    The seed is fixed per test (from its id), so a run reproduces the last one whatever the
    order or worker the tests run in; `SCIMLX_TEST_SEEDS=random` draws new seeds instead."""
    if os.environ.get("SCIMLX_TEST_SEEDS") == "random":
        seed = random.randint(0, 2**31 - 1)
    else:
        seed = zlib.crc32(request.node.nodeid.encode()) & (2**31 - 1)
    request.node.user_properties.append(("getkey_seed", seed))
    key = jr.key(seed)
    counter = iter(range(10**9))

    def _getkey():
        return jr.fold_in(key, next(counter))

    _getkey.seed = seed
    return _getkey


def pytest_runtest_makereport(item, call):
    if call.excinfo is not None:
        for name, value in getattr(item, "user_properties", []):
            if name == "getkey_seed":
                print(f"\n[getkey seed for {item.nodeid}: {value}]")
