"""Measuring helpers shared by the benchmark scripts: resident memory, peaks, timed runs.

Peak memory on CPU is read from ``/proc/self/status`` (``VmRSS``, ``VmHWM``); the peak
is reset through ``/proc/self/clear_refs`` so a run's peak is its own. This counts
torch's CPU allocations, which ``tracemalloc`` does not see.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (0 where the file or field does not exist)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def settle() -> None:
    """Collect garbage and hand freed heap back to the system before a measurement."""
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current resident set; False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler:
    """Sample the resident set every ``interval`` seconds in a thread (MiB, with times).

    Example:
        >>> with RssSampler(0.5) as rss:
        ...     work()  # doctest: +SKIP
        >>> rss.samples[-1]  # doctest: +SKIP
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - start, status_kib("VmRSS") / 1024))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(
            (self.samples[-1][0] if self.samples else 0.0, status_kib("VmRSS") / 1024)
        )

    def thinned(self, points: int = 20) -> list[float]:
        """About ``points`` evenly spaced samples (MiB, rounded), for a report."""
        step = max(1, len(self.samples) // points)
        return [round(m, 1) for _, m in self.samples[::step]]


def measure(
    fn: Callable[[], tuple[Any, int]], device: str = "cpu"
) -> tuple[Any, int, float, float]:
    """(result, captured bytes, seconds, peak memory rise in bytes; NaN where unreadable).

    On CPU the peak is the rise of the process's peak RSS; on a GPU it is the rise of the
    device's peak allocated memory (torch's allocator) over what was allocated before.
    """
    import torch

    settle()
    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = float(torch.cuda.memory_allocated())
        can_peak = True
    else:
        base = status_kib("VmRSS") * 1024.0
        can_peak = reset_peak_rss()
    start = time.perf_counter()
    result, nbytes = fn()
    if on_gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if not can_peak:
        peak = float("nan")
    elif on_gpu:
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = status_kib("VmHWM") * 1024.0 - base
    return result, nbytes, seconds, peak


def torch_calls(fn: Callable[[], object]) -> int:
    """Top-level torch operator calls of one run (``torch.profiler``, host side).

    On a GPU, at a shape where the host cannot launch kernels as fast as the device runs
    them, time grows with these calls whatever the sizes; the count does not depend on the
    device or on a busy machine.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for event in prof.events() if event.cpu_parent is None)


def load_average() -> float:
    """The 1-minute load average (other work on the machine skews timings)."""
    with contextlib.suppress(OSError):
        return float(Path("/proc/loadavg").read_text().split()[0])
    return float("nan")


def write_report(
    out: Path, title: str, intro: str, body: str, verdicts: list[str], results: Any
) -> None:
    """Print the report and write it to ``out`` (markdown) and the raw results beside it
    (``.json``), each atomically."""
    import json
    import os

    text = "\n".join(
        [
            f"## {title}",
            "",
            intro,
            "",
            body,
            "",
            "### Targets",
            "",
            *[f"- {v}" for v in verdicts],
            "",
        ]
    )
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, content in ((out, text), (out.with_suffix(".json"), json.dumps(results, indent=1))):
        tmp_path = path.with_name(path.name + ".tmp")
        tmp_path.write_text(content)
        os.replace(tmp_path, path)
