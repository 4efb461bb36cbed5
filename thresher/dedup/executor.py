"""Run a shuffle — map every input into ``partitions`` pieces, reduce each partition — either
in this process or as Ray tasks.

With Ray the driver only holds object references and each reducer's small ``info`` dict; the
pieces live in the object store (which spills to disk), a map task holds one input and a
reduce task one partition. The in-process executor runs the same functions with one
partition, which is the fast path for small inputs and the reference the Ray path must match.

A stream can be split once and fed to several shuffles (``split`` then ``shuffle(...,
presplit=...)``): MinHash verification joins the same signature pieces twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stream:
    """Inputs of one side of a shuffle and how to split one of them into partitions."""

    inputs: Sequence[Any]
    split: Callable[..., list]  # split(input, partitions, *args) -> list of `partitions` pieces
    args: tuple = field(default_factory=tuple)


Split = list  # per input of a stream, its `partitions` pieces (tables or object refs)


class LocalExecutor:
    """In this process. More than one partition only serves to test the partitioned logic
    without Ray."""

    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions

    def split(self, stream: Stream) -> Split:
        return [stream.split(x, self.partitions, *stream.args) for x in stream.inputs]

    def shuffle(
        self, streams: list[Stream], reduce: Callable, args: tuple = (), presplit: Sequence[Split] = ()
    ) -> tuple[list, list[dict]]:
        P = self.partitions
        split = [self.split(s) for s in streams] + list(presplit)
        payloads, infos = [], []
        for p in range(P):
            payload, info = reduce(p, P, *[[pieces[p] for pieces in stream] for stream in split], *args)
            payloads.append(payload)
            infos.append(info)
        return payloads, infos

    def map(self, fn: Callable, inputs: Sequence[Any], args: tuple = ()) -> list:
        return [fn(x, *args) for x in inputs]

    def materialize(self, items: list) -> list:
        return list(items)


def _split_task(split, x, partitions, *args):
    pieces = split(x, partitions, *args)
    return pieces if partitions > 1 else pieces[0]


def _reduce_task(reduce, p, partitions, lengths, args, *flat):
    streams, i = [], 0
    for n in lengths:
        streams.append(list(flat[i : i + n]))
        i += n
    return reduce(p, partitions, *streams, *args)


class RayExecutor:
    def __init__(self, partitions: int) -> None:
        import ray

        self.partitions = partitions
        self._split = ray.remote(_split_task)
        self._reduce = ray.remote(num_returns=2)(_reduce_task)
        self._map = ray.remote(lambda fn, x, args: fn(x, *args))
        self._ray = ray

    def split(self, stream: Stream) -> Split:
        P = self.partitions
        refs = [
            self._split.options(num_returns=P).remote(stream.split, x, P, *stream.args) for x in stream.inputs
        ]
        return [r if P > 1 else [r] for r in refs]

    def shuffle(
        self, streams: list[Stream], reduce: Callable, args: tuple = (), presplit: Sequence[Split] = ()
    ) -> tuple[list, list[dict]]:
        P = self.partitions
        by_stream = [self.split(s) for s in streams] + list(presplit)
        lengths = [len(stream) for stream in by_stream]
        payloads, infos = [], []
        for p in range(P):
            flat = [pieces[p] for stream in by_stream for pieces in stream]
            payload, info = self._reduce.remote(reduce, p, P, lengths, args, *flat)
            payloads.append(payload)
            infos.append(info)
        return payloads, self._ray.get(infos)

    def map(self, fn: Callable, inputs: Sequence[Any], args: tuple = ()) -> list:
        return [self._map.remote(fn, x, args) for x in inputs]

    def materialize(self, items: list) -> list:
        return self._ray.get(items)
