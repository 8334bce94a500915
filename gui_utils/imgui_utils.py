"""Small Dear ImGui helpers shared by widgets: disabled blocks, item widths, tooltips, status text."""

import contextlib
import os

from imgui_bundle import imgui

ERROR_COLOR = imgui.ImVec4(1.0, 0.45, 0.40, 1.0)
WARN_COLOR = imgui.ImVec4(1.0, 0.80, 0.30, 1.0)
DIM_COLOR = imgui.ImVec4(0.62, 0.62, 0.66, 1.0)
OK_COLOR = imgui.ImVec4(0.55, 0.85, 0.55, 1.0)


@contextlib.contextmanager
def grayed_out(cond=True):
    """Disable (and dim) the enclosed widgets when `cond` is true."""
    if cond:
        imgui.begin_disabled(True)
    try:
        yield
    finally:
        if cond:
            imgui.end_disabled()


@contextlib.contextmanager
def item_width(width):
    """Set the width of the enclosed widgets (pixels; negative = right-aligned remainder)."""
    imgui.push_item_width(float(width))
    try:
        yield
    finally:
        imgui.pop_item_width()


def tooltip(text):
    """Show `text` as a tooltip when the previous item is hovered."""
    if imgui.is_item_hovered(imgui.HoveredFlags_.delay_short):
        imgui.set_tooltip(text)


def colored_text(color, text):
    """Wrapped coloured text (errors, warnings, hints)."""
    imgui.push_style_color(imgui.Col_.text, color)
    imgui.text_wrapped(text)
    imgui.pop_style_color()


def dim_text(text):
    colored_text(DIM_COLOR, text)


def label_value(label, value, label_width=None):
    """'label   value' on one line, values aligned at `label_width` pixels."""
    x0 = imgui.get_cursor_pos_x()
    imgui.text_colored(DIM_COLOR, label)
    imgui.same_line(x0 + label_width if label_width else 0.0)
    imgui.text(str(value))


def section(label, default_open=True):
    """A collapsing header; returns True when expanded."""
    flags = imgui.TreeNodeFlags_.default_open if default_open else 0
    return imgui.collapsing_header(label, flags)


def input_with_button(item_id, hint, text, button):
    """A text field filling the row beside a button. Returns (submitted: Enter or the button, text)."""
    avail = imgui.get_content_region_avail().x
    imgui.set_next_item_width(avail - imgui.calc_text_size(button).x - 3 * imgui.get_style().frame_padding.x)
    entered, text = imgui.input_text_with_hint(item_id, hint, text, imgui.InputTextFlags_.enter_returns_true)
    imgui.same_line()
    return imgui.button(button) or entered, text


def path_label(path):
    """A list entry that shows a file's name and has its full path as Dear ImGui ID, so that two
    files of the same name (network-snapshot-000000.pkl of two runs) stay two entries."""
    return f'{os.path.basename(path.rstrip("/")) or path}##{path}'
