"""Tables the commands print (shared, so every command shows a frontier the same way)."""

from __future__ import annotations


def frontier_table(frontier, *, every: bool = False) -> str:
    """The frontier as a table: memory (as many decimals as tell the configurations apart), error, its
    std, where it came from, configuration; with `every`, dominated configurations too, marked x."""
    from peppp.frontier import mb_decimals

    table = frontier.to_pandas()
    if not every:
        table = table[table["on_frontier"]]
    d = mb_decimals(table["memory_mb"])
    lines = [f"{'memory_mb':>{8 + d}}  {'error':>6}  {'± std':>7}  {'source':<9}  {'':1} config"]
    for row in table.itertuples():
        std = "" if row.error_std != row.error_std else f"{row.error_std:.4f}"  # NaN: unknown
        mark = " " if row.on_frontier else "x"
        source = "measured" if row.measured else "estimated"
        lines.append(f"{row.memory_mb:>{8 + d}.{d}f}  {row.error:>6.4f}  {std:>7}  {source:<9}  {mark:1} {row.config}")
    if every:
        lines.append("x: dominated")
    return "\n".join(lines)
