"""Markdown of the evaluation's tables (`training.evaluate.tables` makes the numbers): overall per method and
condition with the silhouette IoUs, the scene and pixel heads, and FS@τ per category and per source."""

from __future__ import annotations

from training.silhouette_eval import VIEWS

CONDITIONS = ("clean", "cluttered", "occluded")
"""The scene conditions of a view, in table order."""


def format_tables(result: dict) -> str:
    """Markdown tables: overall (per method × condition), then FS@τ per category, then per source (when the
    rows come from more than one)."""
    lines = ["| method | condition | views | FS@τ | FS@2τ | FS@3τ | FS@5τ | CD | IoU front | side | top |"]
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for method, groups in result["overall"].items():
        for condition in [c for c in (*CONDITIONS, "all") if c in groups]:
            g = groups[condition]
            ious = " | ".join(f"{g[f'iou_{v}']:.3f}" if f"iou_{v}" in g else "–" for v in VIEWS)
            lines.append(
                f"| {method} | {condition} | {int(g['n'])} | {g['fscore@0.05']:.3f} | {g['fscore@0.1']:.3f} | "
                f"{g['fscore@0.15']:.3f} | {g['fscore@0.25']:.3f} | {g['cd']:.4f} | {ious} |"
            )
    lines += _scene_lines(result.get("scene", {}))
    lines += _pixel_lines(result.get("pixel_heads", {}))
    lines += _fscore_table(result["per_category"], "category", with_counts=False, at_least=1)
    lines += _fscore_table(result.get("per_source", {}), "source", with_counts=True, at_least=2)
    return "\n".join(lines)


def _pixel_lines(pixel: dict) -> list[str]:
    """The pixel heads' errors per condition; [] without them."""
    if not pixel:
        return []
    return _titled_table(
        "Pixel heads (the model's row; depth: scale-and-shift invariant error, 1 = flat):",
        ["condition", "views", "depth error", "visible-mask IoU", "focal \\|log error\\|"],
        [
            [condition, g["n"], f"{g['depth_error']:.3f}", f"{g['mask_iou']:.3f}", f"{g['focal_log_error']:.3f}"]
            for condition, g in pixel.items()
        ],
    )


def _scene_lines(scene: dict) -> list[str]:
    """The gravity and category heads' table (gravity error, category accuracy) per condition; [] without
    either. The gravity columns appear only for a model with a gravity head."""
    if not scene:
        return []
    has_gravity = any(g.get("gravity_error_deg_median") is not None for g in scene.values())
    columns = ["condition", "views"]
    if has_gravity:
        columns += ["gravity error median", "mean", "within 10°", "a constant elevation: median"]
        columns += ["elevation correlation"]
    columns += ["category accuracy", "balanced", 'without "object"', "auto chose a category"]
    rows = []
    for condition, g in scene.items():
        named = "–" if g["category_accuracy_named"] is None else f"{g['category_accuracy_named']:.0%}"
        balanced = g["category_accuracy_balanced"]
        category = [f"{g['category_accuracy']:.0%}", f"{balanced:.0%}", named, f"{g['auto_chose_a_category']:.0%}"]
        rows.append([condition, g["n"], *(_gravity_cells(g) if has_gravity else []), *category])
    if not has_gravity:
        return _titled_table("Category head (the model's row):", columns, rows)
    title = (
        "Gravity and category heads (the model's row; a constant elevation: the error of always answering the "
        "views' mean elevation, the bar a gravity head has to clear):"
    )
    return _titled_table(title, columns, rows)


def _gravity_cells(g: dict) -> list[str]:
    """The scene table's gravity cells of one condition: 'median | mean | within 10°', constant, correlation."""
    median = g.get("gravity_error_deg_median")
    mean, within = g.get("gravity_error_deg_mean"), g.get("gravity_within_10deg")
    gravity = f"{median:.1f}° | {mean:.1f}° | {within:.0%}" if median is not None else "– | – | –"
    constant, correlation = g.get("constant_elevation_error_deg_median"), g.get("elevation_correlation")
    constant = "–" if constant is None else f"{constant:.1f}°"
    correlation = "–" if correlation is None else f"{correlation:.2f}"
    return [gravity, constant, correlation]


def _titled_table(title: str, columns: list[str], rows: list[list]) -> list[str]:
    """Markdown lines: a blank line, the title, a blank line, then the table."""
    lines = ["", title, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _fscore_table(groups: dict, name: str, with_counts: bool, at_least: int) -> list[str]:
    """FS@τ per value of `name` (rows) × method and condition (columns); [] with fewer than `at_least` values.

    groups: {method: {condition: {value: summary}}}, as `tables` makes them."""
    methods = list(groups)
    conditions = sorted({c for m in methods for c in groups[m]}, key=CONDITIONS.index)
    values = sorted({k for m in methods for c in conditions for k in groups[m].get(c, {})} - {"all"})
    if len(values) < at_least:
        return []
    header = [f"{m} {c}" for m in methods for c in conditions]
    lines = ["", f"FS@τ per {name}:", "", f"| {name} | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for value in values:
        cells = []
        for method in methods:
            for condition in conditions:
                group = groups[method].get(condition, {}).get(value)
                count = f" ({int(group['n'])})" if group and with_counts else ""
                cells.append(f"{group['fscore@0.05']:.3f}{count}" if group else "–")
        lines.append(f"| {value} | " + " | ".join(cells) + " |")
    return lines
