"""Search methods on one interface, `step(train_batch, val_batch) -> metrics`, and the search loop.

    from rarts.search import METHODS, MethodSettings
    method = METHODS["rarts"](SearchNetwork(16, 10, 8), Architecture(), MethodSettings(lam=1.0, beta=1.0))
    metrics = method.step((x_train, t_train), (x_val, t_val))

Importing this package registers every method in METHODS: darts1, darts2, milenas, rarts, random.
"""

from rarts.search import darts1, darts2, milenas, random, rarts  # noqa: F401  (registration)
from rarts.search.base import METHODS, MethodSettings, SearchMethod, WeightSGD, register_method

__all__ = ["METHODS", "MethodSettings", "SearchMethod", "WeightSGD", "register_method"]
