"""The buffer period a task actually gets, after inheritance (CTS config/buffer_period.go,
cts-spec 6): the API shows it and the run triggers wait it."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.taskfiles.conditions import kind_of
from reconciler.taskfiles.model import BufferPeriodConfig, GlobalDefaults, TaskSpec

# CTS's built-in minimum, used when a task sets only `max` and the global period is off.
DEFAULT_BUFFER_MIN = 5_000_000_000


@dataclass(frozen=True)
class EffectiveBuffer:
    enabled: bool
    min: int  # nanoseconds
    max: int


_OFF = EffectiveBuffer(False, 0, 0)


def effective_buffer(spec: TaskSpec, defaults: GlobalDefaults) -> EffectiveBuffer:
    """The buffer period a task runs with (CTS config/buffer_period.go, cts-spec 6)."""
    if spec.condition is not None and not kind_of(spec.condition).buffered:
        return _OFF
    bp = spec.buffer_period or BufferPeriodConfig()
    if bp.enabled is False:
        return _OFF
    if bp.enabled is None and bp.min is None and bp.max is None:
        if not defaults.buffer_enabled:
            return _OFF
        return _clamped(defaults.buffer_min, defaults.buffer_max)
    # Something was set: the period is on; a missing max is 4 x min, not the global max.
    lo = bp.min
    if lo is None:
        lo = defaults.buffer_min if defaults.buffer_enabled else DEFAULT_BUFFER_MIN
    hi = bp.max if bp.max is not None else 4 * lo
    return _clamped(lo, hi)


def _clamped(lo: int, hi: int) -> EffectiveBuffer:
    # CTS silently corrects min > max to max = min.
    return EffectiveBuffer(True, lo, max(lo, hi))
