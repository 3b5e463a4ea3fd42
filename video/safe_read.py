"""Reading the sampled clips of one video so that no file can stop a loader worker.

- A time limit per video (`data.decode_timeout` seconds, 0: none). decord can spin forever inside C++
  holding the GIL, where neither a thread nor a Python signal handler gets control back, so with a
  limit each video is decoded in a forked child process that is killed when the limit passes. The
  child also confines a decoder's crash (a segfault) and its leaked memory to one video.
- Every exception that decoding or resizing can raise on a bad file becomes a `VideoDecodeError`
  naming the file and the reason, which the dataset counts and reports as a skip.
- A truncated video (its header lists more frames than the file holds) is used with the frames it has
  when they span a clip, and reported as truncated; it is skipped as too short otherwise. A truncated
  file that decord cannot open is read with PyAV.
"""
from __future__ import annotations

import ctypes
import os
import pickle
import select
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

import numpy as np
import torch

from errors import UserError
from video.config import DataConfig
from video.decode import VideoDecodeError, VideoReader, open_video
from video.decode_pyav import PyAVReader
from video.sampling import clip_span, sample_clips

T = TypeVar("T")


class TooShortError(VideoDecodeError):
    """A truncated video whose decodable frames do not span a clip."""


@dataclass
class ClipRead:
    """The decoded clips of one video and what was noticed on the way."""

    frames: torch.Tensor  # uint8 (*indices.shape, 3, H, W), channels-last strides
    indices: np.ndarray  # frame indices, e.g. (clips, T)
    num_frames: int  # frames the file really holds
    fps: float  # frames per second the file declares (0 when unknown)
    truncated: Optional[str] = None  # "path: ..." when the header promised more frames than the file holds


def describe(exc: BaseException) -> str:
    """A one-line reason for any exception: its type and the last line of its message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1][:300]}" if lines else type(exc).__name__


def guarded(path: str, work: Callable[[], T]) -> T:
    """`work()`, with any exception but a UserError or an interrupt turned into a VideoDecodeError on `path`."""
    try:
        return work()
    except UserError:
        raise
    except Exception as exc:  # a bad file can make decoders and resizers raise anything
        raise VideoDecodeError(path, describe(exc)) from exc


def _open(path: str, cfg: DataConfig, short_side: Optional[int]) -> VideoReader:
    """The configured backend's reader, or a PyAV reader of a truncated file the backend refused."""
    try:
        return guarded(path, lambda: open_video(path, cfg.backend, cfg.decode_threads, short_side))
    except VideoDecodeError as refused:
        if not os.path.isfile(path):
            raise
        try:
            reader = PyAVReader(path, cfg.decode_threads, short_side, allow_truncated=True)
        except Exception:
            raise refused from None
        if reader.header_frames > reader.num_frames:
            return reader
        reader.close()
        raise refused


MAX_TAIL_PROBES = 8  # frames from the end of a truncated file tried before giving it up


def _decodable_end(path: str, threads: int, short_side: Optional[int], count: int) -> int:
    """How many frames from the start of a truncated file decode: its damaged tail (a packet cut in the
    middle, and the frames that depend on it) is left out. Each probe decodes from the last keyframe."""
    for end in range(count, max(count - MAX_TAIL_PROBES, 0), -1):
        try:
            with PyAVReader(path, threads, short_side, allow_truncated=True) as reader:
                reader.get_frames([end - 1])
            return end
        except Exception:  # this frame depends on the damaged tail: try the one before
            continue
    raise VideoDecodeError(path, f"truncated, and none of its last {MAX_TAIL_PROBES} frames decode")


Choose = Callable[[int, float], np.ndarray]  # (frames that decode, fps) -> frame indices of any shape


def _decode(path: str, cfg: DataConfig, short_side: Optional[int], choose: Choose,
            rng: Optional[np.random.Generator]) -> dict:
    """Open one video, choose its frames and decode them (plain data only: it may travel back from a child
    process). Frames that several indices share are decoded once."""
    with _open(path, cfg, short_side) as reader:
        header, usable = getattr(reader, "header_frames", 0), reader.num_frames
        if header > usable:
            usable = _decodable_end(path, cfg.decode_threads, short_side, usable)

        def read() -> dict:
            indices = choose(usable, reader.fps)
            flat = indices.reshape(-1)
            wanted, inverse = np.unique(flat, return_inverse=True)
            frames = reader.get_frames(flat) if len(wanted) == len(flat) else reader.get_frames(wanted)[inverse]
            return {"frames": frames, "indices": indices, "num_frames": usable, "header_frames": header,
                    "fps": reader.fps}

        result = guarded(path, read)
    if rng is not None:
        result["rng"] = rng.bit_generator.state
    return result


def _read(path: str, cfg: DataConfig, short_side: Optional[int], choose: Choose,
          rng: Optional[np.random.Generator], needed: int) -> ClipRead:
    """`_decode` within `cfg.decode_timeout` seconds, truncation checked against `needed` frames."""
    path = os.fspath(path)
    if cfg.decode_timeout > 0:
        result = run_with_time_limit(path, cfg.decode_timeout, lambda: _decode(path, cfg, short_side, choose, rng))
        if rng is not None:
            rng.bit_generator.state = result["rng"]  # the draws the child made, as if made here
    else:
        result = _decode(path, cfg, short_side, choose, rng)
    truncated = None
    if result["header_frames"] > result["num_frames"]:
        detail = f"truncated: the header lists {result['header_frames']} frames but only {result['num_frames']} decode"
        if result["num_frames"] < needed:
            raise TooShortError(path, f"{detail}, fewer than the {needed} a clip spans")
        truncated = f"{path}: {detail}"
    indices, frames = result["indices"], result["frames"]
    frames = torch.from_numpy(frames).view(*indices.shape, *frames.shape[1:]).movedim(-1, -3)
    return ClipRead(frames, indices, result["num_frames"], result["fps"], truncated)


def read_clips(path: str, cfg: DataConfig, rng: Optional[np.random.Generator], clips: int = 1,
               short_side: Optional[int] = None) -> ClipRead:
    """Decode the sampled frames of one video within `cfg.decode_timeout` seconds (see the module
    docstring); `rng` None gives the test views. Frames come at most `short_side` pixels on their short
    side. Any failure is a VideoDecodeError."""
    return _read(path, cfg, short_side, lambda usable, fps: sample_clips(usable, cfg.sampling, rng, clips, fps), rng,
                 clip_span(cfg.sampling))


def read_frames(path: str, cfg: DataConfig, indices: np.ndarray, short_side: Optional[int] = None) -> ClipRead:
    """The frames at `indices` (any shape, e.g. windows x T) of one video, with the guards of `read_clips`:
    the time limit, decode errors as VideoDecodeError, and a truncated file's frames that decode (an index
    beyond them is a TooShortError)."""
    def choose(usable: int, fps: float) -> np.ndarray:
        if indices.size and int(indices.max()) >= usable:
            raise TooShortError(path, f"frame {int(indices.max())} asked for, but only {usable} frames decode")
        return indices

    return _read(path, cfg, short_side, choose, None, int(indices.max()) + 1 if indices.size else 0)


# ---- the time limit: one forked child per video ----

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the kernel kills this child if the worker that forked it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: an orphan child still ends with its decode


def _child(write_end: int, work: Callable[[], Any]) -> None:
    """Run `work` and send back ("ok", result) or ("error", VideoDecodeError); never returns."""
    try:
        _die_with_parent()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE):
            signal.signal(sig, signal.SIG_DFL)  # killable, and a crash is reported by the parent alone
        try:
            payload = ("ok", work())
        except VideoDecodeError as exc:
            payload = ("error", exc)
        except BaseException as exc:
            payload = ("error", VideoDecodeError("", describe(exc)))
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view):]
    finally:
        os._exit(0)


def _read_until(read_end: int, deadline: float) -> Optional[bytes]:
    """Everything the child writes, or None if the deadline passes first."""
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        ready, _, _ = select.select([read_end], [], [], remaining)
        if ready:
            chunk = os.read(read_end, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _exit_reason(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"the decoder crashed ({signal.Signals(os.WTERMSIG(status)).name})"
    return f"the decoder process ended without a result (exit code {os.WEXITSTATUS(status)})"


def run_with_time_limit(path: str, seconds: float, work: Callable[[], T]) -> T:
    """`work()` in a forked child; a VideoDecodeError "timed out after N s" (the child killed) when it
    takes longer, or naming the crash when the child dies."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _child(write_end, work)
    os.close(write_end)
    try:
        data = _read_until(read_end, time.monotonic() + seconds)
    finally:
        os.close(read_end)
    if data is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise VideoDecodeError(path, f"timed out after {seconds:g} s")
    _, status = os.waitpid(pid, 0)
    if not data:
        raise VideoDecodeError(path, _exit_reason(status))
    kind, value = pickle.loads(data)
    if kind == "error":
        raise type(value)(path, value.reason)
    return value
