"""The question the visualizer asks before running code from a network file.

Network files load safely by default (no code from the file runs). When a file is refused because
it needs its own code, the render result names the classes involved; this dialog shows them and,
on Yes, marks that file as trusted so that the next render loads it the trusting way. The answer
is remembered per file for the session; No is remembered too, so the question is not repeated.
The state logic (`offer`, `answer`, `is_trusted`) works without a window.
"""

from __future__ import annotations

import gui_utils  # noqa: F401 - sets the GLFW/OpenGL platform before imgui_bundle loads glfw
from imgui_bundle import imgui

TITLE = 'Run code from this file?'


class TrustDialog:
    def __init__(self):
        self.trusted: set[str] = set()
        self.declined: set[str] = set()
        self.pending: tuple[str, tuple] | None = None     # (path, class names) awaiting an answer
        self.trust_all = False                            # visualizer.py --trust-pickle

    def is_trusted(self, path) -> bool:
        return path is not None and (self.trust_all or path in self.trusted)

    def offer(self, result, current) -> bool:
        """Queue the question if `result` is a refusal of the current file not yet answered."""
        untrusted = getattr(result, 'untrusted', ())
        path = getattr(getattr(result, 'args', None), 'pkl', None)
        if not untrusted or path is None or path != current or self.pending is not None:
            return False
        if self.is_trusted(path) or path in self.declined:
            return False
        self.pending = (path, tuple(untrusted))
        return True

    def question(self) -> str:
        names = ', '.join(self.pending[1]) if self.pending else ''
        return f'This file contains code that will run on your machine: {names}. Load anyway?'

    def answer(self, yes: bool) -> bool:
        """Record the answer; True when the file is now trusted (its render must be redone)."""
        if self.pending is None:
            return False
        path, self.pending = self.pending[0], None
        (self.trusted if yes else self.declined).add(path)
        return yes

    def draw(self, result, current) -> bool:
        """Open the modal when needed and draw it; True when the user chose to load the file."""
        if self.offer(result, current):
            imgui.open_popup(TITLE)
        changed = False
        opened, _ = imgui.begin_popup_modal(TITLE, None, imgui.WindowFlags_.always_auto_resize)
        if opened and self.pending is None:       # answered elsewhere (or the file changed)
            imgui.close_current_popup()
            imgui.end_popup()
        elif opened:
            imgui.push_text_wrap_pos(imgui.get_font_size() * 32)
            imgui.text(self.question())
            imgui.text_disabled('Only load files from a source you trust. "python -m raycond.convert" can then\n'
                                'write a safe copy that opens without this question.')
            imgui.pop_text_wrap_pos()
            if imgui.button('Yes, load it'):
                changed = self.answer(True)
                imgui.close_current_popup()
            imgui.same_line()
            if imgui.button('No'):
                self.answer(False)
                imgui.close_current_popup()
            imgui.end_popup()
        return changed
