"""The frontier drawn as a PNG: every configuration, the staircase, one-std error bars and a budget's pick.

matplotlib loads only when a plot is drawn, and only its Agg canvas (no pyplot).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from peppp.frontier._point import FrontierPoint

if TYPE_CHECKING:
    from peppp.frontier._value import Frontier


def png(frontier: Frontier, *, budget_mb: float | None = None, dpi: int = 120) -> bytes:
    """PNG of every configuration: frontier points coloured (measured filled, estimated hollow),
    dominated ones grey, error bars of one std, the frontier staircase, and a budget line if given."""
    return _png_bytes(figure(frontier, budget_mb=budget_mb, dpi=dpi), dpi=dpi)


def figure(frontier: Frontier, *, budget_mb: float | None = None, dpi: int = 120):
    """The matplotlib Figure that `png` renders (its labels placed for `dpi`)."""
    # The Agg canvas directly: no pyplot, so no global backend switch and no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    # A budget below every configuration fails here, before anything is drawn or written.
    pick = None if budget_mb is None else frontier.best_for(budget_mb).point
    mask = frontier.pareto_mask()
    fig = Figure(figsize=(10, 5.4), layout="constrained", dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    grey, measured_colour, estimated_colour = "#b0b0b0", "#1f5fa8", "#d9641e"

    measured = np.array([p.measured for p in frontier.points], dtype=bool)
    std = np.array([p.error_std or 0.0 for p in frontier.points])
    memory, error = frontier.memory_mb, frontier.error
    # Four groups (on the frontier or not x measured or not), one call each: 99 separate artists
    # would make the plot take seconds.
    for on_front in (False, True):
        for is_measured in (False, True):
            group = (mask == on_front) & (measured == is_measured)
            if not group.any():
                continue
            colour = (measured_colour if is_measured else estimated_colour) if on_front else grey
            with_std = group & (std > 0)
            if with_std.any():
                ax.errorbar(
                    memory[with_std], error[with_std], yerr=std[with_std], fmt="none", ecolor=colour,
                    elinewidth=1.0 if on_front else 0.6, capsize=2 if on_front else 0,
                    alpha=0.9 if on_front else 0.6, zorder=2 if on_front else 1,
                )
            ax.plot(
                memory[group], error[group], linestyle="none", marker="o" if is_measured else "D",
                markersize=6.5 if on_front else 4.5, markerfacecolor=colour if is_measured else "white",
                markeredgecolor=colour, markeredgewidth=1.3, zorder=4 if on_front else 3,
            )

    front = frontier.pareto()
    xs = [p.memory_mb for p in front]
    ys = [p.error for p in front]
    right = max(p.memory_mb for p in frontier.points) * 1.05
    ax.step(xs + [right], ys + [ys[-1]], where="post", color="#333333", linewidth=1.2, zorder=2)

    handles = [
        Line2D([], [], linestyle="none", marker="o", color=measured_colour, label="measured, on frontier"),
        Line2D([], [], linestyle="none", marker="D", markerfacecolor="white", markeredgecolor=estimated_colour,
               label="estimated, on frontier"),
        Line2D([], [], linestyle="none", marker="o", color=grey, label="measured, dominated"),
        Line2D([], [], linestyle="none", marker="D", markerfacecolor="white", markeredgecolor=grey,
               label="estimated, dominated"),
        Line2D([], [], color="#333333", label="frontier"),
    ]
    if budget_mb is not None:
        green = "#2a9d4b"
        ax.axvline(budget_mb, color=green, linestyle="--", linewidth=1.0)
        handles.append(Line2D([], [], color=green, linestyle="--", label=f"budget {budget_mb:g} MB"))
        ax.plot(pick.memory_mb, pick.error, linestyle="none", marker="o", markersize=15,
                markerfacecolor="none", markeredgecolor=green, markeredgewidth=1.6, zorder=5)
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=10, markerfacecolor="none",
                              markeredgecolor=green, label=f"pick: {pick.config}"))
    if memory.max() / memory.min() > 4:  # a wide range (fp32 beside 4-bit formats) would crowd the frontier
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        # plain numbers (2, 3, 5, 10, 20 ...) rather than 2x10^0
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if round(v / 10 ** np.floor(np.log10(v))) in (2, 3, 5) else ""))
    ax.set_xlabel("training memory (MB)")
    ax.set_ylabel("test error (1 - top-1 accuracy)")
    ax.set_title(
        f"{frontier.dataset}: estimated frontier, {frontier.n_measured} of {len(frontier.points)} "
        "configurations measured",
        fontsize=10,
    )
    ax.grid(True, which="major", color="#e6e6e6", linewidth=0.7)
    # Beside the axes, not over them: no point is ever hidden behind the legend.
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              borderaxespad=0.0)
    footer = f"meta-experiment {frontier.meta_experiment}" + (f", method {frontier.method}" if frontier.method else "")
    fig.text(0.01, 0.005, footer + "; bars: ±1 std", fontsize=7, color="#666666")
    if len(front) <= 16:
        _label_frontier(fig, ax, front, extra=[] if pick is None else [pick])
    return fig


# Where a label may go around its point, in points: nearest first, and below-left first where the
# staircase leaves the plot empty.
_DIRECTIONS = ((-1, -1), (0, -1), (-1, 0), (1, -1), (1, 0), (-1, 1), (0, 1), (1, 1))
_RADII = (6, 11, 18, 28, 40, 55, 75, 100)
_LEADER_FROM = 18  # a name this far off (points) gets a leader line to its point


def _label_frontier(fig, ax, front: Sequence[FrontierPoint], *, extra: Sequence[FrontierPoint] = ()) -> None:
    """Name each frontier point at the nearest place around it where the name stays inside the axes
    and overlaps no other name and no frontier marker; a name set further off gets a thin leader line
    to its point, so every name is read against the right point."""
    from matplotlib.transforms import Bbox

    fig.draw_without_rendering()  # settle the layout and the autoscaled limits before measuring
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    scale = fig.dpi / 72
    # The frontier markers, the pick's ring and the frontier's error bars are obstacles too.
    obstacles = []
    for points, r in ((front, 4.5 * scale), (extra, 8.5 * scale)):
        for p in points:
            x, y = ax.transData.transform((p.memory_mb, p.error))
            obstacles.append(Bbox.from_extents(x - r, y - r, x + r, y + r))
    for p in front:
        if p.error_std:
            x, low = ax.transData.transform((p.memory_mb, p.error - p.error_std))
            _, high = ax.transData.transform((p.memory_mb, p.error + p.error_std))
            obstacles.append(Bbox.from_extents(x - 2.5 * scale, low, x + 2.5 * scale, high))
    names = []
    for p in front:
        best = None
        for r in _RADII:
            for dx, dy in _DIRECTIONS:
                label = ax.annotate(
                    p.config, (p.memory_mb, p.error), xytext=(dx * r, dy * r), textcoords="offset points",
                    ha={-1: "right", 0: "center", 1: "left"}[dx], va={-1: "top", 0: "center", 1: "bottom"}[dy],
                    fontsize=7, color="#333333",
                )
                box = label.get_window_extent(renderer)
                inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
                # names over names are the worst; over a marker or an error bar, bad
                overlap = (sum(_overlap_area(box, other) for other in obstacles)
                           + 10 * sum(_overlap_area(box, other) for other in names))
                score = (not inside, overlap)
                if best is None or score < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (score, label, box, r)
                else:
                    label.remove()
                if inside and overlap == 0:
                    break
            if best[0] == (False, 0):
                break
        _, label, box, r = best
        if r >= _LEADER_FROM:
            label.remove()
            label = ax.annotate(
                p.config, (p.memory_mb, p.error), xytext=label.xyann, textcoords="offset points",
                ha=label.get_ha(), va=label.get_va(), fontsize=7, color="#333333",
                arrowprops={"arrowstyle": "-", "color": "#999999", "linewidth": 0.6, "shrinkA": 1, "shrinkB": 4},
            )
        names.append(box)


def _overlap_area(a, b) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width * height if width > 0 and height > 0 else 0.0


def _png_bytes(fig, *, dpi: int) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
