"""Where the terms of a sum (experiments, sources) are evaluated.

An *executor* is one of

* ``None``: in this process, in order (the default);
* a :class:`concurrent.futures.Executor` (``ProcessPoolExecutor`` for CPU-bound
  terms on one machine; its tasks and results must pickle);
* a ``dask.distributed.Client``, local (``LocalCluster``) or on a cluster.

Results come back in the order of the terms, so a sum is the same whatever
runs it. A failing term raises :class:`TermError` naming it; nothing is
dropped.
"""

from __future__ import annotations

from concurrent.futures import Executor
from itertools import repeat


class TermError(RuntimeError):
    """A term of a sum failed; the message names it and the original error."""


def parallel_map(executor, fn, items, names=None):
    """Apply ``fn`` to every item with ``executor``; return the results in order.

    Parameters
    ----------
    executor : None, concurrent.futures.Executor or dask.distributed.Client
    fn : callable
        A module-level function (it must pickle for processes and Dask).
    items : list
        Arguments, one call each.
    names : list of str, optional
        Names used in error messages (default ``"term i"``).

    Returns
    -------
    list
        ``[fn(item) for item in items]``.

    Raises
    ------
    TermError
        If a call fails, naming the item.
    """
    items = list(items)
    names = [f"term {i}" for i in range(len(items))] if names is None else list(names)
    tasks = list(zip(repeat(fn), items, names))
    if executor is None:
        return [_named_call(t) for t in tasks]
    if _is_dask_client(executor):
        futures = executor.map(_named_call, tasks, pure=False)
        return executor.gather(futures)
    if isinstance(executor, Executor):
        return list(executor.map(_named_call, tasks))
    raise TypeError(
        "executor must be None, a concurrent.futures.Executor or a dask.distributed.Client, "
        f"got {type(executor).__name__}"
    )


def _named_call(task):
    fn, item, name = task
    try:
        return fn(item)
    except TermError:
        raise
    except Exception as err:  # re-raised with the term's name; nothing is swallowed
        raise TermError(f"{name} failed: {type(err).__name__}: {err}") from err


def _is_dask_client(obj):
    return type(obj).__module__.startswith("distributed") and hasattr(obj, "gather")


def _evaluate_part(args):
    part, theta, need = args
    return part.evaluate(theta, need)


def run_parts(executor, parts, theta, need):
    """Evaluate every objective in ``parts`` at ``theta`` (see :func:`parallel_map`)."""
    return parallel_map(
        executor, _evaluate_part, [(p, theta, need) for p in parts], [p.name for p in parts]
    )
