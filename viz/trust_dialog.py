"""The question the visualizer asks before running code from a network file.

Network files load safely by default (no code from the file runs). When a file is refused because
it needs its own code (UntrustedPickleError; a file refused for bad data is never offered), the
render result names the classes involved; this dialog shows them and, on Yes, trusts exactly the
bytes that were refused: consent is keyed by the sha256 of the file's content, and the renderer is
handed that digest (`trust_for`), so the loader trusts the file only while its bytes still have it.
A file replaced at the same path is a new question. No is remembered per content too. The state
logic (`offer`, `answer`, `trust_for`) works without a window.
"""

from __future__ import annotations

import gui_utils  # noqa: F401 - sets the GLFW/OpenGL platform before imgui_bundle loads glfw
from imgui_bundle import imgui

from raycond import loading

TITLE = 'Run code from this file?'


class TrustDialog:
    def __init__(self):
        self.trusted: dict[str, str] = {}              # path -> sha256 of the bytes the user agreed to run
        self.declined: dict[str, str] = {}             # path -> sha256 of the bytes the user refused
        self.pending: tuple[str, tuple] | None = None  # (path, class names) awaiting an answer
        self.pending_digest: str | None = None         # sha256 of the content that question is about
        self.trust_all = False                         # visualizer.py --trust-pickle
        self._digest_of_result = (None, None)          # (render result, digest of its file): hashed once, not per frame

    def trust_for(self, path):
        """What the loader is told for `path`: True with --trust-pickle, the digest of the content
        the user trusted (the loader checks it against the bytes it reads), else False."""
        if path is None:
            return False
        return True if self.trust_all else self.trusted.get(path, False)

    def is_trusted(self, path) -> bool:
        return bool(self.trust_for(path))

    def offer(self, result, current) -> bool:
        """Queue the question if `result` is a refusal of the current file's content not yet answered."""
        untrusted = getattr(result, 'untrusted', ())
        path = getattr(getattr(result, 'args', None), 'pkl', None)
        if not untrusted or path is None or path != current or self.pending is not None or self.trust_all:
            return False
        digest = getattr(result, 'untrusted_digest', None)
        if digest is None and self._digest_of_result[0] is result:
            digest = self._digest_of_result[1]
        if digest is None:
            try:
                digest = loading.digest_of(path)
            except (loading.NetworkLoadError, OSError):
                return False
            self._digest_of_result = (result, digest)
        if digest in (self.trusted.get(path), self.declined.get(path)):
            return False
        self.pending, self.pending_digest = (path, tuple(untrusted)), digest
        return True

    def question(self) -> str:
        names = ', '.join(self.pending[1]) if self.pending else ''
        return f'This file contains code that will run on your machine: {names}. Load anyway?'

    def answer(self, yes: bool) -> bool:
        """Record the answer; True when the file is now trusted (its render must be redone)."""
        if self.pending is None:
            return False
        (path, _names), digest = self.pending, self.pending_digest
        self.pending = self.pending_digest = None
        (self.trusted if yes else self.declined)[path] = digest
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
