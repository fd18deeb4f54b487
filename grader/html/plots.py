"""Plot geometry for the HTML pages: numbers in, coordinates out; the templates draw the SVG.

Nothing here sees a candidate string except as an opaque label, which the templates escape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PlotConfig:
    width: float = 640.0          # SVG width in user units (the page scales it)
    bar_height: float = 180.0     # histogram drawing height
    row_height: float = 24.0      # one row of an interval plot
    label_width: float = 170.0    # interval plot: room for the row labels on the left
    label_chars: int = 24         # longer labels are cut (the full one is in the row's <title>)
    margin: float = 28.0
    histogram_bins: int = 10      # 0-10, 10-20, ..., 90-100 (100 falls in the last bin)


CONFIG = PlotConfig()


@dataclass(frozen=True)
class Bar:
    index: int
    low: float
    high: float
    count: int
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True)
class Histogram:
    width: float
    height: float
    base_y: float  # y of the x axis
    left: float
    right: float
    max_count: int
    bars: list[Bar]


def histogram(values: list[float], config: PlotConfig = CONFIG) -> Histogram:
    """Counts of percentages in equal bins over [0, 100]; the last bin includes 100."""
    bins = config.histogram_bins
    step = 100.0 / bins
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, max(0, int(value // step)))] += 1
    top = config.margin
    base_y = top + config.bar_height
    left, right = config.margin + 12, config.width - config.margin
    slot = (right - left) / bins
    peak = max(counts, default=0) or 1
    bars = []
    for i, count in enumerate(counts):
        height = config.bar_height * count / peak
        low, high = i * step, (i + 1) * step
        bars.append(Bar(index=i, low=low, high=high, count=count, x=round(left + i * slot + 2, 2),
                        y=round(base_y - height, 2), width=round(slot - 4, 2), height=round(height, 2),
                        label=f"{low:g}–{high:g}"))
    return Histogram(width=config.width, height=base_y + 36, base_y=base_y, left=left, right=right,
                     max_count=max(counts, default=0), bars=bars)


@dataclass(frozen=True)
class Interval:
    """One row: a value with its confidence interval and a reference mark (the same grading's)."""
    label: str
    value: float
    low: float
    high: float
    reference: float | None = None


@dataclass(frozen=True)
class IntervalRow:
    label: str        # as given (escaped by the template)
    short: str        # cut to label_chars
    y: float
    x_value: float
    x_low: float
    x_high: float
    x_reference: float | None
    interval: Interval


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class IntervalPlot:
    width: float
    height: float
    left: float
    right: float
    top: float
    bottom: float
    x_one: float  # the baseline (1x), always in range
    ticks: list[Tick]
    rows: list[IntervalRow] = field(default_factory=list)


def _log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 steps between low and high; powers of ten alone when those are too many."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    candidates = [m * 10.0 ** e for e in range(first, last + 1) for m in (1, 2, 5)]
    ticks = [t for t in candidates if low <= t <= high]
    if len(ticks) > 9:
        ticks = [t for t in ticks if math.isclose(t, 10.0 ** round(math.log10(t)))]
    return ticks or [low, high]


def _tick_label(value: float) -> str:
    return f"{value:g}×" if value >= 0.01 else f"{value:.1e}×"


def interval_plot(intervals: list[Interval], config: PlotConfig = CONFIG) -> IntervalPlot:
    """Rows of value ± interval on a shared log axis (speed-ups are ratios)."""
    numbers = [v for i in intervals for v in (i.value, i.low, i.high, i.reference) if v is not None and v > 0]
    numbers.append(1.0)  # the baseline stays in view
    low, high = min(numbers) / 1.25, max(numbers) * 1.25
    left, right = config.label_width, config.width - config.margin
    top = config.margin
    span = math.log(high) - math.log(low)

    def x(value: float) -> float:
        clamped = min(max(value, low), high)
        return round(left + (right - left) * (math.log(clamped) - math.log(low)) / span, 2)

    rows = []
    for n, item in enumerate(intervals):
        short = item.label if len(item.label) <= config.label_chars else item.label[:config.label_chars - 1] + "…"
        rows.append(IntervalRow(label=item.label, short=short, y=round(top + (n + 0.5) * config.row_height, 2),
                                x_value=x(item.value), x_low=x(item.low), x_high=x(item.high),
                                x_reference=x(item.reference) if item.reference and item.reference > 0 else None,
                                interval=item))
    bottom = top + len(intervals) * config.row_height
    return IntervalPlot(width=config.width, height=bottom + 40, left=left, right=right, top=top, bottom=bottom,
                        x_one=x(1.0), ticks=[Tick(x(t), _tick_label(t)) for t in _log_ticks(low, high)], rows=rows)
