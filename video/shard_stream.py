"""Clips streamed from the tar shards of `prep shards` (data.format=shards): decode, sample and
transform as for folders (video/dataset.py), with every position of an epoch assigned from the index.

The shard index (`S-shards.json` beside `S-000000.tar`...) lists each shard's samples, so every rank and
loader worker knows its share before it reads a byte, whatever the number of shards:
- the epoch's stream is the shards in an order drawn from (seed, epoch) (evaluation: index order),
  each shard's samples in their order;
- training: rank r takes the contiguous run of `batches x batch_size` positions starting at
  r x batches x batch_size, with batches = samples // (ranks x batch_size), the same on every rank; the
  stream's last positions that make no whole global batch are dropped (different ones each epoch, as the
  shard order changes). Evaluation: contiguous runs that differ by at most one sample, none dropped;
- a rank's batches are cut into contiguous runs, one per loader worker: a worker opens only the shards
  its run touches and reads past (without decoding) the samples before its run in the first one; torch's
  loader takes one batch from each worker in turn, which fixes the order of the rank's batches;
- each worker shuffles its run in a buffer of `data.shard_buffer` samples, drawn from (seed, epoch, rank,
  worker); augmentation draws from (seed, epoch, the video's row in the split list) as for folders;
- a sample that is missing from its shard, or whose video cannot be decoded, is counted and reported as
  `SHARD/KEY.mp4: reason` and replaced by another sample this worker has read (in its buffer or among
  the last few it gave out): the number of samples never changes.
The order depends on (seed, epoch, ranks, workers, batch size, buffer); a mid-epoch resume with the same
ones gives exactly the remaining batches (`set_epoch(epoch, start)`); it reads its workers' runs up to
the resume point again, but decodes none of it. Videos are decoded from a temporary file (in /dev/shm
when there is one), so both backends, the decode time limit and the truncated-file reading apply as is.
"""
from __future__ import annotations

import collections
import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from braceexpand import braceexpand
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.gopen import gopen, set_options
from webdataset.tariterators import base_plus_ext

from errors import UserError
from video.config import DataConfig
from video.dataset import invalid_item, train_clip, train_item, views_item
from video.decode import VideoDecodeError
from video.safe_read import ClipRead, describe
from video.sampling import check_sampling
from video.transforms import build_test_transform, build_train_transform

INDEX_FORMAT = "video-shards/1"
RECENT = 8  # samples a worker keeps after giving them out, to replace a broken one near the end of its run


def shard_name(split: str, number: int) -> str:
    """The file name of shard `number` of a split."""
    return f"{split}-{number:06d}.tar"


def index_name(split: str) -> str:
    """The file name of a split's shard index."""
    return f"{split}-shards.json"


def index_url(shard_url: str) -> str:
    """Where the index of the shard at `shard_url` is: the same URL (or command) with `-NNNNNN.tar`
    replaced by `-shards.json`."""
    url, found = re.subn(r"-\d+\.tar(?=\s|$)", "-shards.json", shard_url, count=1)
    if not found:
        raise UserError(f"shard {shard_url}: expected a name like train-000000.tar, as `prep shards` writes, "
                        "with its index train-shards.json beside it")
    return url


@dataclass(frozen=True)
class Shard:
    """One shard: its name in the index, where to read it, and its samples (key, class) in order."""

    name: str
    url: str
    samples: List[Tuple[str, int]]


@dataclass(frozen=True)
class ShardIndex:
    """What `S-shards.json` says about the shards a pattern names."""

    split: str
    labels: List[str]
    flip_pairs: List[Tuple[int, int]]
    shards: List[Shard]


def read_index(pattern: str, option: str) -> ShardIndex:
    """The index of the shards `pattern` names (a brace range, a path or a `pipe:` command), limited to
    those shards in the pattern's order; a UserError naming `option` when it does not fit."""
    urls = list(braceexpand(pattern.strip())) if pattern.strip() else []
    if not urls:
        raise UserError(f"{option} is empty: name the shards, e.g. {option}=DIR/train-{{000000..000009}}.tar")
    where = index_url(urls[0])
    try:
        with gopen(where, "rb") as stream:
            document = json.loads(stream.read())
    except (OSError, ValueError) as exc:
        raise UserError(f"shard index {where} ({option}) cannot be read: {describe(exc)}") from exc
    if not isinstance(document, dict) or document.get("format") != INDEX_FORMAT:
        raise UserError(f"shard index {where}: not an index of `prep shards` (format {INDEX_FORMAT})")
    by_name = {entry["name"]: entry for entry in document["shards"]}
    shards, seen = [], set()
    for url in urls:
        found = re.search(r"([^/\s:]+-\d+\.tar)(?=\s|$)", url)
        name = found[1] if found else url
        if name not in by_name or name in seen:
            raise UserError(f"{option}: shard {url} is {'named twice in' if name in seen else 'not in'} the "
                            f"index {where}")
        seen.add(name)
        samples = [(str(key), int(label)) for key, label in by_name[name]["samples"]]
        if not all(key.isdigit() for key, _ in samples):
            raise UserError(f"shard index {where}: keys must be the videos' rows in the split list, as `prep shards` "
                            "writes them")
        shards.append(Shard(name, url, samples))
    return ShardIndex(document["split"], list(document["labels"]),
                      [tuple(pair) for pair in document.get("flip_pairs", [])], shards)


# ---- who reads which positions (pure functions of the index counts and the layout) ----

@dataclass(frozen=True)
class Segment:
    """Positions `start` to `stop` (excluded) of shard number `shard`."""

    shard: int
    start: int
    stop: int


def shard_order(count: int, seed: int, epoch: int, shuffle: bool) -> List[int]:
    """The order in which the epoch's stream visits the shards."""
    if not shuffle:
        return list(range(count))
    return [int(i) for i in np.random.default_rng([seed, epoch]).permutation(count)]


def cut(order: Sequence[int], counts: Sequence[int], begin: int, end: int) -> List[Segment]:
    """The segments of shards that positions `begin` to `end` (excluded) of the stream cover."""
    segments, offset = [], 0
    for shard in order:
        low, high = max(begin, offset), min(end, offset + counts[shard])
        if low < high:
            segments.append(Segment(shard, low - offset, high - offset))
        offset += counts[shard]
    return segments


def even_runs(total: int, parts: int) -> List[Tuple[int, int]]:
    """`total` items cut into `parts` contiguous runs whose lengths differ by at most one."""
    return [(part * total // parts, (part + 1) * total // parts) for part in range(parts)]


def train_batches(total: int, world_size: int, batch_size: int) -> int:
    """Batches every rank gets in a training epoch of `total` samples."""
    return total // (world_size * batch_size)


def worker_runs(total: int, rank: int, world_size: int, workers: int, batch_size: int,
                train: bool) -> List[Tuple[int, int]]:
    """The stream positions (begin, end) of each loader worker of `rank`: training in whole batches."""
    if train:
        batches = train_batches(total, world_size, batch_size)
        base = rank * batches * batch_size
        return [(base + low * batch_size, base + high * batch_size) for low, high in even_runs(batches, workers)]
    low, high = even_runs(total, world_size)[rank]
    return [(low + begin, low + end) for begin, end in even_runs(high - low, workers)]


def resume_point(batches: Sequence[int], consumed: int) -> Tuple[List[int], int]:
    """After the loader yielded `consumed` batches of workers holding `batches` each: how many each had
    given out, and which worker's batch comes next. torch's loader takes one batch from each worker in
    turn, passing over workers that have run out."""
    turns = [worker for round_ in range(max(batches, default=0)) for worker, count in enumerate(batches)
             if count > round_]
    taken = [turns[:consumed].count(worker) for worker in range(len(batches))]
    return taken, turns[consumed] if consumed < len(turns) else 0


# ---- reading ----

@dataclass
class Record:
    """One position of a worker's run: the sample's id (its row in the split list, as for folders), class,
    name, and its video bytes (None, with the reason, when the shard did not give them)."""

    index: int
    label: int
    name: str
    data: Optional[bytes]
    reason: str = ""


def _tar_samples(url: str, skip: int, take: int) -> Iterator[Tuple[str, Dict[str, bytes]]]:
    """(key, {suffix: bytes}) of samples `skip` to `skip + take` of the shard at `url`, read in one pass;
    the samples before are read past without keeping their bytes."""
    stream = gopen(url, "rb")
    finished = False
    try:
        archive = tarfile.open(fileobj=stream, mode="r|*")
        ordinal, key, members = -1, None, {}
        for member in archive:
            name_key, suffix = base_plus_ext(member.name)
            if not member.isreg() or name_key is None:
                continue
            if name_key != key:
                if members:
                    yield key, members
                ordinal, key, members = ordinal + 1, name_key, {}
                if ordinal >= skip + take:
                    return
            if ordinal >= skip:
                members[suffix.lower()] = archive.extractfile(member).read()
            archive.members = []  # a stream's member list would grow with the shard
        if members:
            yield key, members
        finished = True
    finally:
        if not finished:  # a pipe's command may see its output closed early: that is no error here
            set_options(stream, ignore_errors=True)
        stream.close()


def read_segment(shard: Shard, start: int, stop: int) -> Iterator[Record]:
    """A Record for each position `start..stop-1` of `shard`: every position, whatever the shard holds."""
    wanted = shard.samples[start:stop]
    given, reason = 0, "missing: the shard ends before it"
    try:
        for key, members in _tar_samples(shard.url, start, stop - start):
            expected, label = wanted[given]
            index, name = int(expected), f"{shard.name}/{expected}.mp4"
            if key != expected:
                yield Record(index, label, name, None, f"the shard holds {key} where the index lists {expected}")
            elif "mp4" not in members:
                yield Record(index, label, name, None, f"no .mp4 member (it has {sorted(members)})")
            else:
                yield Record(index, label, name, members["mp4"])
            given += 1
    except (OSError, tarfile.TarError, EOFError, ValueError) as exc:
        reason = f"the shard cannot be read past sample {start + given} ({describe(exc)})"
    for offset in range(given, len(wanted)):
        expected, label = wanted[offset]
        yield Record(int(expected), label, f"{shard.name}/{expected}.mp4", None, reason)


def buffer_shuffle(records: Iterator[Record], size: int, rng: np.random.Generator
                   ) -> Iterator[Tuple[Record, List[Record]]]:
    """Each record in a buffer-shuffled order, with the records still buffered (the replacement pool)."""
    buffer: List[Record] = []
    for record in records:
        if len(buffer) < max(size, 1):
            buffer.append(record)
            continue
        slot = int(rng.integers(len(buffer)))
        out, buffer[slot] = buffer[slot], record
        yield out, buffer
    while buffer:
        out = buffer.pop(int(rng.integers(len(buffer))) if size > 1 else 0)
        yield out, buffer


class LocalCopy:
    """The bytes of a Record as a temporary file for the decoders, removed on exit."""

    directory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()

    def __init__(self, record: Record):
        self.record = record
        self.path = os.path.join(self.directory, f"video-shard-{os.getpid()}-{record.index}.mp4")

    def __enter__(self) -> str:
        with open(self.path, "wb") as file:
            file.write(self.record.data)
        return self.path

    def __exit__(self, *exc_info) -> None:
        os.unlink(self.path)


# ---- the dataset ----

class ShardStream(IterableDataset):
    """The clips of one split's shards for one rank (items as VideoDataset's, `index` = the video's row in
    the split list, so a video gets the augmentation it gets from the folder); `set_epoch(epoch, start)`
    as for the folder sampler, also seen by persistent workers."""

    def __init__(self, pattern: str, option: str, split: str, cfg: DataConfig, train: bool, rank: int = 0,
                 world_size: int = 1, seed: int = 0, clips: int = 1, crops: int = 1):
        if train and (clips, crops) != (1, 1):
            raise ValueError("training takes one clip and one crop per video")
        if cfg.shard_buffer < 0:
            raise UserError(f"data.shard_buffer={cfg.shard_buffer}: must be >= 0")
        check_sampling(cfg.sampling)
        self.index = read_index(pattern, option)
        if self.index.split != split:
            raise UserError(f"{option} holds the {self.index.split} split, not {split}")
        self.cfg, self.train, self.rank, self.world_size, self.seed = cfg, train, rank, world_size, seed
        self.clips, self.views = clips, clips * crops
        self.labels = self.index.labels
        self.samples = {int(key): (f"{shard.name}/{key}.mp4", label) for shard in self.index.shards
                        for key, label in shard.samples}  # by id, as evaluation looks them up
        self.counts = [len(shard.samples) for shard in self.index.shards]
        self.total = sum(self.counts)
        if train:
            self.transform = build_train_transform(cfg.transforms, len(self.labels), self.index.flip_pairs)
        else:
            self.test_views = build_test_transform(cfg.transforms, crops, self.index.flip_pairs)
        self.position = torch.zeros(2, dtype=torch.int64).share_memory_()  # epoch, samples consumed

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Choose the epoch, and begin after the first `start` samples (whole batches) of this rank's share."""
        if start % self.cfg.batch_size:
            raise ValueError(f"start={start} is not a whole number of batches of {self.cfg.batch_size}")
        self.position[0], self.position[1] = epoch, start

    def __len__(self) -> int:
        runs = worker_runs(self.total, self.rank, self.world_size, 1, self.cfg.batch_size, self.train)
        return max(runs[0][1] - runs[0][0] - int(self.position[1]), 0)

    def __iter__(self) -> Iterator[Dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, start = int(self.position[0]), int(self.position[1])
        batch = self.cfg.batch_size
        runs = worker_runs(self.total, self.rank, self.world_size, workers, batch, self.train)
        taken, first = resume_point([(high - low) // batch for low, high in runs], start // batch)
        worker = (first + worker) % workers  # the loader asks worker 0 first: it plays the run due next
        begin, end = runs[worker]
        skip = taken[worker] * batch
        order = shard_order(len(self.counts), self.seed, epoch, self.train)
        records = (record for segment in cut(order, self.counts, begin, end)
                   for record in read_segment(self.index.shards[segment.shard], segment.start, segment.stop))
        if not self.train:
            for record in records:
                yield self._test_item(record)
            return
        rng = np.random.default_rng([self.seed, epoch, self.rank, worker])
        recent: collections.deque = collections.deque(maxlen=RECENT)
        for given, (record, buffer) in enumerate(buffer_shuffle(records, self.cfg.shard_buffer, rng)):
            if given >= skip:
                pool = [other for other in list(buffer) + list(recent) if other.data is not None]
                yield self._train_item(record, pool, epoch)
            if record.data is not None:
                recent.append(record)

    def _train_item(self, record: Record, pool: List[Record], epoch: int) -> Dict:
        def replace(rng: np.random.Generator) -> Record:
            if not pool:
                raise UserError(f"{record.name}: {record.reason or 'cannot be decoded'}, and this loader worker "
                                "has read no other sample to replace it with")
            return pool[int(rng.integers(len(pool)))]

        rng = np.random.default_rng([self.seed, epoch, record.index])
        return train_item(record, self._decode, replace, lambda chosen: chosen.index, rng, self.cfg.max_replacements)

    def _decode(self, record: Record, rng: np.random.Generator) -> Tuple[torch.Tensor, int, ClipRead]:
        """(clip, label, read) of a record, as VideoDataset.decode_train_clip; errors name `record.name`."""
        if record.data is None:
            raise VideoDecodeError(record.name, record.reason)
        with LocalCopy(record) as path:
            try:
                clip, label, read = train_clip(path, record.label, self.cfg, self.transform, rng)
            except VideoDecodeError as exc:
                raise VideoDecodeError(record.name, exc.reason) from None
        if read.truncated:
            read.truncated = read.truncated.replace(path, record.name, 1)
        return clip, label, read

    def _test_item(self, record: Record) -> Dict:
        if record.data is None:
            return invalid_item(record.label, record.index, self.cfg, self.views, f"{record.name}: {record.reason}")
        with LocalCopy(record) as path:
            return views_item(path, record.label, record.index, self.cfg, self.clips, self.views, self.test_views,
                              name=record.name)
