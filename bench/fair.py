"""Fair timing for the benchmark scripts: interleaved rounds, wall and CPU time, and a
load check that marks a run measured on a busy machine as contaminated.

Every comparison in ``bench/`` goes through :func:`interleave`: each round calls every
side once, in an order that alternates between rounds, so that load from other jobs
falls on all sides alike, and each call records wall time and the CPU time of this
process and its finished children (``os.times``: threads and DataLoader workers count).

:class:`LoadCheck` times a fixed reference loop (one single-threaded numpy loop per
usable core, run side by side) before and after the measurements. The run is valid when
both times are within ``tolerance`` of the quiet baseline, the fastest time this
machine has given for the same loop, saved in ``~/.cache/camjax-bench/quiet.json`` (or
``$CAMJAX_BENCH_QUIET``), and the one-minute load average before the run is at most
``1.5 x cores + 1`` (the run's own warm-up counts in it, other jobs push it past). With no
saved baseline the faster of the two in-run times is the baseline, which alone only
catches load that changed during the run (the printed line says which baseline served).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_seconds() -> float:
    """User + system CPU time of this process and its waited-for children."""
    try:
        import resource  # microseconds, where os.times counts clock ticks
    except ImportError:  # not on a Unix
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of one call of ``fn``."""
    w0, c0 = time.perf_counter(), cpu_seconds()
    fn()
    return time.perf_counter() - w0, cpu_seconds() - c0


@dataclass
class Times:
    """Per-round wall and CPU seconds of one side of a comparison."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median_wall(self) -> float:
        return float(np.median(self.wall))

    @property
    def median_cpu(self) -> float:
        return float(np.median(self.cpu))


def interleave(
    sides: Mapping[str, Callable[[], object]],
    rounds: int,
    *,
    warmup: int = 1,
    pause: float = 0.0,
) -> dict[str, Times]:
    """Times ``rounds`` calls of each side, one call of every side per round.

    Odd rounds run the sides in reverse order, so no side always follows the same one.
    ``pause`` seconds of sleep before each call let the previous side's worker threads
    go idle (XLA's and PyTorch's pools spin a while after a step). ``warmup`` untimed
    calls per side come first (compilation, caches).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    names = list(sides)
    for name in names:
        for _ in range(warmup):
            sides[name]()
    out = {name: Times() for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            if pause:
                time.sleep(pause)
            wall, cpu = measure(sides[name])
            out[name].wall.append(wall)
            out[name].cpu.append(cpu)
    return out


def ratio(times: Mapping[str, Times], num: str, den: str, clock: str = "wall") -> float:
    """Median over rounds of ``den / num`` seconds: how many times faster ``num`` is."""
    a, b = np.asarray(getattr(times[num], clock)), np.asarray(getattr(times[den], clock))
    if np.any(a <= 0):  # below the clock's resolution: no ratio
        return float("nan")
    return float(np.median(b / a))


def serve(run: Callable[[], Mapping]) -> None:
    """The worker side of :class:`Worker`: print READY, then for each ``run`` line on
    stdin one call of ``run`` timed, printed as one JSON line (its result plus ``wall``
    and ``cpu`` seconds, unless the result times a window of its own and gives them).
    Load and warm up before calling this."""
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        out: list = []
        wall, cpu = measure(lambda out=out: out.append(run()))
        print(json.dumps({"wall": wall, "cpu": cpu, **dict(out[0] or {})}), flush=True)


class Worker:
    """A side of a comparison in its own process (e.g. its own XLA device count), started
    and warmed up at once, then timed one call at a time: a callable for
    :func:`interleave` whose results collect in :attr:`results`. The process runs
    ``cmd`` and :func:`serve`; idle, it waits on its stdin and takes no CPU."""

    def __init__(self, name: str, cmd: Sequence[str], env: Mapping[str, str] | None = None):
        self.name = name
        self.results: list[dict] = []
        self.proc = subprocess.Popen(list(cmd), env=dict(env or os.environ), text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        self._line("READY")

    def _line(self, start: str) -> str:
        for line in self.proc.stdout:
            if line.startswith(start):
                return line
        raise RuntimeError(f"worker {self.name!r} exited with code {self.proc.wait()}")

    def __call__(self) -> dict:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        self.results.append(json.loads(self._line("{")))
        return self.results[-1]

    def times(self) -> Times:
        return Times([r["wall"] for r in self.results], [r["cpu"] for r in self.results])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()


def _reference_loop(n: int = 200_000, repeats: int = 40) -> None:
    x = np.linspace(0.0, 1.0, n)
    for _ in range(repeats):
        x = np.sin(x) + 0.5  # single-threaded in numpy; releases the GIL


def reference_seconds(cores: int | None = None, tries: int = 3) -> float:
    """Median wall time of the reference loop run once per core, side by side (the
    median, not the best: a busy machine has quiet moments)."""
    cores = cores or usable_cores()
    times = []
    with concurrent.futures.ThreadPoolExecutor(cores) as pool:
        for _ in range(tries):
            t = time.perf_counter()
            list(pool.map(lambda _: _reference_loop(), range(cores)))
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def _quiet_path() -> str:
    default = os.path.join(os.path.expanduser("~"), ".cache", "camjax-bench", "quiet.json")
    return os.environ.get("CAMJAX_BENCH_QUIET", default)


def _machine_key() -> str:
    return f"{platform.node()}|{platform.processor() or platform.machine()}|{usable_cores()}"


class LoadCheck:
    """Reference loop before (:meth:`start`) and after (:meth:`finish`) a measurement."""

    def __init__(self, tolerance: float = 0.25, save: bool = True):
        self.tolerance = tolerance
        self.save = save
        self.before = self.after = float("nan")
        self.load_before = self.load_after = (float("nan"),) * 3

    def start(self) -> LoadCheck:
        self.load_before = os.getloadavg()
        self.before = reference_seconds()
        return self

    def finish(self) -> dict:
        """The verdict as a dict: ``valid`` plus the times it was made from."""
        self.after = reference_seconds()
        self.load_after = os.getloadavg()
        saved = self._saved()
        baseline = min(saved or np.inf, self.before, self.after)
        limit = (1 + self.tolerance) * baseline
        busy = self.load_before[0] > 1.5 * usable_cores() + 1
        valid = self.before <= limit and self.after <= limit and not busy
        if self.save and baseline < (saved or np.inf):
            self._store(baseline)
        return {
            "valid": bool(valid),
            "reference_before_s": self.before,
            "reference_after_s": self.after,
            "quiet_baseline_s": baseline,
            "baseline_source": "saved" if saved else "this run",
            "tolerance": self.tolerance,
            "loadavg_before": list(self.load_before),
            "loadavg_after": list(self.load_after),
            "cores": usable_cores(),
        }

    def _saved(self) -> float | None:
        try:
            with open(_quiet_path()) as f:
                return float(json.load(f)[_machine_key()])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store(self, seconds: float) -> None:
        path = _quiet_path()
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                with open(path) as f:
                    table = json.load(f)
            except (OSError, ValueError):
                table = {}
            table[_machine_key()] = seconds
            with open(path, "w") as f:
                json.dump(table, f, indent=1)
        except OSError:
            pass  # a read-only home: the in-run baseline still applies


def verdict_line(check: Mapping) -> str:
    """One line for the printed table: VALID or CONTAMINATED, with the numbers."""
    word = "valid" if check["valid"] else "CONTAMINATED (measured under load; do not quote)"
    return (
        f"load check: {word}; reference loop {1e3 * check['reference_before_s']:.0f} ms before, "
        f"{1e3 * check['reference_after_s']:.0f} ms after, quiet baseline "
        f"{1e3 * check['quiet_baseline_s']:.0f} ms ({check['baseline_source']}, "
        f"tolerance {check['tolerance']:.0%}); load average "
        f"{check['loadavg_before'][0]:.1f} -> {check['loadavg_after'][0]:.1f} "
        f"on {check['cores']} cores"
    )
