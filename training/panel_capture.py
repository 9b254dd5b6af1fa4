"""The add-on's sidebar panel as its own `draw()` lays it out, without a window: recorded in a bpy process, drawn with
PIL for the README's picture (and read as text where a person checks what the panel says).

Blender draws panels only in a window, and a background process (tests, CI, this machine) has none. So the
panel's `draw(context)` runs against a recorder that stands in for `UILayout`: every label, property, operator,
progress bar and box it asks for becomes a row of `Widget`s, with the property's real name and value from its RNA
definition and the operator's real label and `poll()` state. `draw_panel` then paints those rows in the colours of
Blender's default dark theme. Nothing here is the add-on's behaviour; it only shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Widget:
    kind: str
    """label, check, enum, field, button or progress."""
    text: str
    value: object = None
    """check: bool; enum: (item names, the selected one's index); field: its text; progress: a fraction; button: its
    icon's name (drawn where the text is empty)."""
    enabled: bool = True


@dataclass
class Row:
    widgets: list[Widget] = field(default_factory=list)
    indent: int = 0
    """1 inside a box."""


class LayoutRecorder:
    """Stands in for `bpy.types.UILayout` while a panel's `draw` runs: each call becomes widgets on rows."""

    def __init__(self, rows: list[Row], indent: int = 0, row: Row | None = None, enabled: bool = True):
        self._rows, self._indent, self._row, self._parent_enabled = rows, indent, row, enabled
        self.enabled = self.active = True
        self.alert = False

    # containers ------------------------------------------------------------------------------------------
    def row(self, **_) -> LayoutRecorder:
        row = self._row or self._new_row()
        return LayoutRecorder(self._rows, self._indent, row, self._is_enabled())

    def column(self, **_) -> LayoutRecorder:
        return LayoutRecorder(self._rows, self._indent, None, self._is_enabled())

    def box(self) -> LayoutRecorder:
        return LayoutRecorder(self._rows, self._indent + 1, None, self._is_enabled())

    split = column

    def separator(self, **_) -> None:
        self._rows.append(Row([], self._indent))

    # widgets ---------------------------------------------------------------------------------------------
    def label(self, text: str = "", icon: str = "NONE", **_) -> None:
        self._add(Widget("label", ("⚠ " if icon == "ERROR" else "") + text))

    def progress(self, factor: float = 0.0, type: str = "BAR", text: str = "", **_) -> None:
        self._add(Widget("progress", text, float(factor)))

    def operator(self, idname: str, text: str | None = None, icon: str = "NONE", **_) -> None:
        import bpy

        module, name = idname.split(".")
        operator = getattr(getattr(bpy.ops, module), name)
        label = operator.get_rna_type().name if text is None else text
        self._add(Widget("button", label, icon, enabled=self._is_enabled() and operator.poll()))

    def prop(self, data, name: str, text: str | None = None, expand: bool = False, placeholder: str = "", **_):
        rna = data.bl_rna.properties[name]
        label = rna.name if text is None else text
        value = getattr(data, name)
        if rna.type == "BOOLEAN" and not getattr(rna, "is_array", False):
            self._add(Widget("check", label, bool(value), self._is_enabled()))
        elif rna.type == "ENUM" and expand:
            items = [item.name for item in rna.enum_items]
            selected = [item.identifier for item in rna.enum_items].index(value)
            self._add(Widget("enum", "", (items, selected), self._is_enabled()))
        else:
            if rna.type == "ENUM":
                shown = rna.enum_items[value].name
            elif rna.type == "FLOAT" and getattr(rna, "is_array", False):
                shown = " ".join(f"{v:g}" for v in value)
            elif rna.type == "FLOAT":
                shown = f"{value:.2f}"
            elif rna.type == "POINTER":
                shown = value.name if value is not None else ""
            else:
                shown = str(value)
            self._add(Widget("field", label, shown or placeholder, self._is_enabled()))

    # ------------------------------------------------------------------------------------------------------
    def _is_enabled(self) -> bool:
        return self._parent_enabled and self.enabled

    def _new_row(self) -> Row:
        row = Row([], self._indent)
        self._rows.append(row)
        return row

    def _add(self, widget: Widget) -> None:
        (self._row or self._new_row()).widgets.append(widget)


def capture_panel(panel_class, context) -> list[Row]:
    """Run `panel_class.draw` (a `bpy.types.Panel` subclass) against the recorder; its rows, top to bottom."""
    rows: list[Row] = []

    class PanelStandIn:  # `draw` reads only `self.layout`
        layout = LayoutRecorder(rows)

    panel_class.draw(PanelStandIn(), context)
    return rows


def rows_as_text(rows: list[Row]) -> list[str]:
    """One line per row, as a person reads the panel: `[x] Colour`, `(Inflate) Body Learned`, `[ Reconstruct ]`."""
    lines = []
    for row in rows:
        parts = []
        for w in row.widgets:
            grey = "" if w.enabled else " (greyed out)"
            if w.kind == "check":
                parts.append(f"[{'x' if w.value else ' '}] {w.text}{grey}")
            elif w.kind == "enum":
                items, selected = w.value
                parts.append(" ".join(f"({n})" if i == selected else n for i, n in enumerate(items)))
            elif w.kind == "field":
                parts.append((f"{w.text}: {w.value}" if w.text else str(w.value)) + grey)
            elif w.kind == "button":
                parts.append(f"[ {w.text or w.value} ]{grey}")
            elif w.kind == "progress":
                parts.append(f"<{w.text} {w.value:.0%}>")
            else:
                parts.append(w.text)
        lines.append("  " * row.indent + " | ".join(parts))
    return lines


# Blender's default dark theme, roughly (sRGB).
BACKGROUND, BOX, FIELD, BUTTON, SELECTED = (48, 48, 48), (40, 40, 40), (29, 29, 29), (84, 84, 84), (71, 114, 179)
TEXT, DIM = (230, 230, 230), (120, 120, 120)


def draw_panel(rows: list[Row], width: int = 360, row_height: int = 28, title: str = "ZeroShape-W"):
    """The rows as a picture of the sidebar panel: a PIL RGB image `width` wide."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    pad, gap = 10, 4
    image = Image.new("RGB", (width, row_height * (len(rows) + 1) + 2 * pad), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.polygon([(pad, pad + 8), (pad + 8, pad + 8), (pad + 4, pad + 14)], fill=TEXT)  # the open panel's arrow
    draw.text((pad + 14, pad + 11), title, fill=TEXT, font=font, anchor="lm")
    y = pad + row_height
    for row in rows:
        left = pad + 8 * row.indent
        if row.indent:
            draw.rectangle((pad, y - 2, width - pad, y + row_height - 2), fill=BOX)
        cell = (width - pad - left - gap * max(len(row.widgets) - 1, 0)) / max(len(row.widgets), 1)
        for index, widget in enumerate(row.widgets):
            x0 = left + index * (cell + gap)
            _draw_widget(draw, font, widget, (x0, y + 2, x0 + cell, y + row_height - 4))
        y += row_height
    return image


def _draw_widget(draw, font, widget: Widget, box: tuple[float, float, float, float]) -> None:
    x0, y0, x1, y1 = box
    colour = TEXT if widget.enabled else DIM
    middle = (y0 + y1) / 2
    if widget.kind == "label":
        draw.text((x0 + 2, middle), _fit(draw, font, widget.text, x1 - x0 - 4), fill=colour, font=font, anchor="lm")
    elif widget.kind == "check":
        side = y1 - y0 - 6
        draw.rounded_rectangle(
            (x0 + 2, middle - side / 2, x0 + 2 + side, middle + side / 2), 3, fill=SELECTED if widget.value else BUTTON
        )
        if widget.value:
            tick = [(x0 + 5, middle), (x0 + side / 2, middle + side / 2 - 4), (x0 + side - 1, middle - side / 2 + 3)]
            draw.line(tick, fill=TEXT, width=2)
        draw.text((x0 + side + 8, middle), widget.text, fill=colour, font=font, anchor="lm")
    elif widget.kind == "enum":
        items, selected = widget.value
        step = (x1 - x0) / len(items)
        for i, name in enumerate(items):
            cell = (x0 + i * step, y0, x0 + (i + 1) * step - 1, y1)
            draw.rounded_rectangle(cell, 4, fill=SELECTED if i == selected else BUTTON)
            draw.text(((cell[0] + cell[2]) / 2, middle), name, fill=colour, font=font, anchor="mm")
    elif widget.kind == "field":
        draw.rounded_rectangle(box, 4, fill=FIELD)
        text = f"{widget.text}:  {widget.value}" if widget.text else str(widget.value)
        draw.text((x0 + 6, middle), _fit(draw, font, text, x1 - x0 - 12), fill=colour, font=font, anchor="lm")
    elif widget.kind == "button":
        draw.rounded_rectangle(box, 4, fill=BUTTON)
        if widget.text:
            label = _fit(draw, font, widget.text, x1 - x0 - 8)
            draw.text(((x0 + x1) / 2, middle), label, fill=colour, font=font, anchor="mm")
        else:  # an icon-only button (the Backend line's refresh): a circular arrow
            r, cx = (y1 - y0) / 2 - 4, (x0 + x1) / 2
            draw.arc((cx - r, middle - r, cx + r, middle + r), 40, 330, fill=colour, width=2)
            draw.polygon([(cx + r - 3, middle - 2), (cx + r + 3, middle - 2), (cx + r, middle + 2)], fill=colour)
    elif widget.kind == "progress":
        draw.rounded_rectangle(box, 4, fill=FIELD)
        draw.rounded_rectangle((x0, y0, x0 + (x1 - x0) * widget.value, y1), 4, fill=SELECTED)
        draw.text(((x0 + x1) / 2, middle), widget.text, fill=colour, font=font, anchor="mm")


def _fit(draw, font, text: str, width: float) -> str:
    """`text`, cut with an ellipsis to fit `width` pixels."""
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if len(text) > 2 else ""
    return text
