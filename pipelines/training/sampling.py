"""The order samples are seen in, and the random numbers each sample draws, as pure functions of the seed.

Every sample of a run has a *stream position* p = 0, 1, 2, ...: position p is dataset item
``permutation(epoch = p // N)[p % N]``, with a fresh permutation per epoch. Per-device batches are cut
from that stream (optionally grouped, e.g. images apart from videos), and batch ``k`` goes to process
``k % world_size``. A sample's random draws (frame choice, crop, caption dropout, noise, timestep) come
from generators seeded by ``(seed, purpose, position)``.

So a run is reproducible whatever the number of data-loader workers, resuming needs only the number of
batches consumed, and one process with batch 2 sees the very samples and noise that two processes with
batch 1 see together.
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterator, Optional

import numpy as np
import torch

# Purposes keep the streams of random numbers apart.
DATA = 1
NOISE = 2
BATCH = 3
SHUFFLE = 4


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from a tuple of non-negative integers."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFF_FFFF_FFFF_FFFF


def numpy_rng(seed: int, purpose: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, purpose, *[int(k) for k in key]]))


def torch_generator(seed: int, purpose: int, *key: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(seed, purpose, *key))


def epoch_permutation(length: int, seed: int, epoch: int) -> np.ndarray:
    return numpy_rng(seed, SHUFFLE, epoch).permutation(length)


def stream_positions(length: int, seed: int, shuffle: bool = True, start: int = 0) -> Iterator[tuple[int, int]]:
    """(position, dataset item) pairs forever, from ``start``."""
    epoch, offset = divmod(start, length)
    position = start
    while True:
        order = epoch_permutation(length, seed, epoch) if shuffle else np.arange(length)
        for index in order[offset:]:
            yield position, int(index)
            position += 1
        epoch, offset = epoch + 1, 0


def batches(length: int, batch_size: int, seed: int, shuffle: bool = True,
            group_of: Optional[Callable[[int], Hashable]] = None, start: int = 0) -> Iterator[list[tuple[int, int]]]:
    """Per-device batches of (item, position), forever, from batch number ``start``.

    With ``group_of``, a batch holds items of one group only: items are dealt into per-group buckets in
    stream order and a bucket is emitted when full (as EasyAnimate's image/video sampler does).
    """
    if group_of is None:
        return _consecutive_batches(length, batch_size, seed, shuffle, start)
    return _grouped_batches(length, batch_size, seed, shuffle, group_of, start)


def _consecutive_batches(length, batch_size, seed, shuffle, start):
    batch: list[tuple[int, int]] = []
    for position, item in stream_positions(length, seed, shuffle, start=start * batch_size):
        batch.append((item, position))
        if len(batch) == batch_size:
            yield batch
            batch = []


def _grouped_batches(length, batch_size, seed, shuffle, group_of, start):
    # Which samples a grouped batch holds depends on everything before it, so the stream is replayed
    # from the beginning (index arithmetic only; nothing is decoded).
    emitted = 0
    buckets: dict[Hashable, list[tuple[int, int]]] = {}
    for position, item in stream_positions(length, seed, shuffle):
        bucket = buckets.setdefault(group_of(item), [])
        bucket.append((item, position))
        if len(bucket) == batch_size:
            if emitted >= start:
                yield list(bucket)
            emitted += 1
            bucket.clear()


class StreamBatchSampler(torch.utils.data.Sampler):
    """The batches of one process: batch numbers ``k`` with ``k % world_size == rank``, from ``start_round``.

    A *round* is one batch per process (one micro-step of the whole job). Items are
    ``(dataset item, stream position)`` pairs, which ``SampleKeyDataset`` passes to the dataset.
    """

    def __init__(self, length: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start_round: int = 0, shuffle: bool = True, group_of: Optional[Callable[[int], Hashable]] = None):
        if length <= 0:
            raise ValueError("the dataset is empty")
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.rank, self.world_size, self.start_round = rank, world_size, start_round
        self.shuffle, self.group_of = shuffle, group_of

    def __iter__(self):
        first = self.start_round * self.world_size
        stream = batches(self.length, self.batch_size, self.seed, self.shuffle, self.group_of, start=first)
        for number, batch in enumerate(stream, start=first):
            if number % self.world_size == self.rank:
                yield batch

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 2**62


class SampleKeyDataset(torch.utils.data.Dataset):
    """Wraps a dataset whose ``sample(item, rng)`` takes the sample's own random generator.

    Adds ``item`` and ``position`` (the stream position, which seeds the sample's noise later) to each sample.
    """

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        item, position = key
        sample = self.dataset.sample(item, numpy_rng(self.seed, DATA, position))
        sample["item"] = item
        sample["position"] = position
        return sample
