"""Small modern-OpenGL (3.3 core) helpers: uint8 image textures, a textured-quad shader, pixel readback.

Everything here uses shaders and vertex array objects only (no fixed-function calls), so it works
on core-profile contexts (macOS, Mesa, Wayland/EGL).
"""

import ctypes

import numpy as np
import OpenGL.GL as gl


class GLError(RuntimeError):
    """A shader failed to compile/link or a texture could not be created."""


def _as_image(image):
    """Return (contiguous uint8 HxWxC array, channels) for an HxW, HxWx1, HxWx3 or HxWx4 uint8 array."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f'texture image: expected dtype uint8, got {arr.dtype}')
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f'texture image: expected shape HxW, HxWx1, HxWx3 or HxWx4, got {tuple(np.shape(image))}')
    return np.ascontiguousarray(arr), arr.shape[2]


_FORMATS = {1: gl.GL_RED, 3: gl.GL_RGB, 4: gl.GL_RGBA}
_INTERNAL = {1: gl.GL_R8, 3: gl.GL_RGB8, 4: gl.GL_RGBA8}
_SWIZZLE_PARAMS = (gl.GL_TEXTURE_SWIZZLE_R, gl.GL_TEXTURE_SWIZZLE_G, gl.GL_TEXTURE_SWIZZLE_B, gl.GL_TEXTURE_SWIZZLE_A)
_SWIZZLE_GREY = (gl.GL_RED, gl.GL_RED, gl.GL_RED, gl.GL_ONE)
_SWIZZLE_IDENTITY = (gl.GL_RED, gl.GL_GREEN, gl.GL_BLUE, gl.GL_ALPHA)


class Texture:
    """A 2D GL texture holding a uint8 image; `update()` re-uploads in place when the shape is unchanged.

    One-channel images are shown as grey (texture swizzle), so all images sample as RGBA.
    `gl_id` is usable with `imgui.image(imgui.ImTextureRef(tex.gl_id), size)`.
    """

    def __init__(self, image=None, *, linear=True):
        self.gl_id = int(gl.glGenTextures(1))
        self.width = self.height = self.channels = 0
        self.linear = linear
        if image is not None:
            self.update(image)

    def update(self, image):
        """Upload `image` (uint8 HxW[xC]); reallocates only when the size or channel count changes."""
        arr, channels = _as_image(image)
        h, w = arr.shape[:2]
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.gl_id)
        gl.glPixelStorei(gl.GL_UNPACK_ALIGNMENT, 1)
        gl.glPixelStorei(gl.GL_UNPACK_ROW_LENGTH, 0)
        if (w, h, channels) != (self.width, self.height, self.channels):
            gl.glTexImage2D(gl.GL_TEXTURE_2D, 0, _INTERNAL[channels], w, h, 0, _FORMATS[channels],
                            gl.GL_UNSIGNED_BYTE, arr)
            gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_WRAP_S, gl.GL_CLAMP_TO_EDGE)
            gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_WRAP_T, gl.GL_CLAMP_TO_EDGE)
            # Swizzle is texture state that outlives a reallocation: set all four every time, so a
            # texture that held a grey image and now holds RGB(A) samples its own channels again.
            for param, src in zip(_SWIZZLE_PARAMS, _SWIZZLE_GREY if channels == 1 else _SWIZZLE_IDENTITY):
                gl.glTexParameteri(gl.GL_TEXTURE_2D, param, src)
            self.width, self.height, self.channels = w, h, channels
        else:
            gl.glTexSubImage2D(gl.GL_TEXTURE_2D, 0, 0, 0, w, h, _FORMATS[channels], gl.GL_UNSIGNED_BYTE, arr)
        self.set_filter(self.linear)
        gl.glBindTexture(gl.GL_TEXTURE_2D, 0)

    def set_filter(self, linear):
        """Linear (smooth) or nearest (blocky pixels) magnification."""
        self.linear = bool(linear)
        mode = gl.GL_LINEAR if self.linear else gl.GL_NEAREST
        gl.glBindTexture(gl.GL_TEXTURE_2D, self.gl_id)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_MIN_FILTER, mode)
        gl.glTexParameteri(gl.GL_TEXTURE_2D, gl.GL_TEXTURE_MAG_FILTER, mode)

    def delete(self):
        """Free the GL texture (needs the context current)."""
        if self.gl_id:
            gl.glDeleteTextures([self.gl_id])
            self.gl_id = 0


def compile_program(vertex_src, fragment_src):
    """Compile and link a GLSL program; raises GLError with the driver's log on failure."""
    shaders = []
    for kind, src in ((gl.GL_VERTEX_SHADER, vertex_src), (gl.GL_FRAGMENT_SHADER, fragment_src)):
        sh = gl.glCreateShader(kind)
        gl.glShaderSource(sh, src)
        gl.glCompileShader(sh)
        if not gl.glGetShaderiv(sh, gl.GL_COMPILE_STATUS):
            log = gl.glGetShaderInfoLog(sh)
            raise GLError(f'shader compile failed: {log.decode(errors="replace") if isinstance(log, bytes) else log}')
        shaders.append(sh)
    prog = gl.glCreateProgram()
    for sh in shaders:
        gl.glAttachShader(prog, sh)
    gl.glLinkProgram(prog)
    for sh in shaders:
        gl.glDeleteShader(sh)
    if not gl.glGetProgramiv(prog, gl.GL_LINK_STATUS):
        log = gl.glGetProgramInfoLog(prog)
        raise GLError(f'shader link failed: {log.decode(errors="replace") if isinstance(log, bytes) else log}')
    return prog


_QUAD_VS = """
#version 330 core
layout(location = 0) in vec2 a_pos;   // unit square corner, (0,0)..(1,1), y down
uniform vec4 u_rect;                  // x0, y0, x1, y1 in normalized device coordinates
out vec2 v_uv;
void main() {
    v_uv = a_pos;
    gl_Position = vec4(mix(u_rect.x, u_rect.z, a_pos.x), mix(u_rect.y, u_rect.w, a_pos.y), 0.0, 1.0);
}
"""

_QUAD_FS = """
#version 330 core
in vec2 v_uv;
uniform sampler2D u_tex;
uniform float u_alpha;
out vec4 o_color;
void main() {
    vec4 c = texture(u_tex, v_uv);
    o_color = vec4(c.rgb, c.a * u_alpha);
}
"""


class QuadRenderer:
    """Draws a texture into a pixel rectangle of the framebuffer with a tiny shader + VAO."""

    def __init__(self):
        self.program = compile_program(_QUAD_VS, _QUAD_FS)
        self._u_rect = gl.glGetUniformLocation(self.program, 'u_rect')
        self._u_tex = gl.glGetUniformLocation(self.program, 'u_tex')
        self._u_alpha = gl.glGetUniformLocation(self.program, 'u_alpha')
        corners = np.array([0, 0, 1, 0, 0, 1, 1, 1], dtype=np.float32)  # triangle strip
        self.vao = gl.glGenVertexArrays(1)
        self.vbo = gl.glGenBuffers(1)
        gl.glBindVertexArray(self.vao)
        gl.glBindBuffer(gl.GL_ARRAY_BUFFER, self.vbo)
        gl.glBufferData(gl.GL_ARRAY_BUFFER, corners.nbytes, corners, gl.GL_STATIC_DRAW)
        gl.glEnableVertexAttribArray(0)
        gl.glVertexAttribPointer(0, 2, gl.GL_FLOAT, gl.GL_FALSE, 8, ctypes.c_void_p(0))
        gl.glBindVertexArray(0)
        gl.glBindBuffer(gl.GL_ARRAY_BUFFER, 0)

    def draw(self, texture, rect, framebuffer_size, alpha=1.0):
        """Draw `texture` into rect=(x, y, w, h) in framebuffer pixels (origin top-left)."""
        fb_w, fb_h = framebuffer_size
        x, y, w, h = rect
        if fb_w <= 0 or fb_h <= 0 or w <= 0 or h <= 0:
            return
        x0 = 2.0 * x / fb_w - 1.0
        x1 = 2.0 * (x + w) / fb_w - 1.0
        y0 = 1.0 - 2.0 * y / fb_h
        y1 = 1.0 - 2.0 * (y + h) / fb_h
        gl.glViewport(0, 0, int(fb_w), int(fb_h))
        gl.glDisable(gl.GL_SCISSOR_TEST)
        gl.glEnable(gl.GL_BLEND)
        gl.glBlendFunc(gl.GL_SRC_ALPHA, gl.GL_ONE_MINUS_SRC_ALPHA)
        gl.glUseProgram(self.program)
        gl.glUniform4f(self._u_rect, x0, y0, x1, y1)
        gl.glUniform1i(self._u_tex, 0)
        gl.glUniform1f(self._u_alpha, float(alpha))
        gl.glActiveTexture(gl.GL_TEXTURE0)
        gl.glBindTexture(gl.GL_TEXTURE_2D, texture.gl_id)
        gl.glBindVertexArray(self.vao)
        gl.glDrawArrays(gl.GL_TRIANGLE_STRIP, 0, 4)
        gl.glBindVertexArray(0)
        gl.glBindTexture(gl.GL_TEXTURE_2D, 0)
        gl.glUseProgram(0)

    def delete(self):
        """Free the program and buffers (needs the context current)."""
        gl.glDeleteBuffers(1, [self.vbo])
        gl.glDeleteVertexArrays(1, [self.vao])
        gl.glDeleteProgram(self.program)


def read_pixels(width, height):
    """Read the current (back) framebuffer as an HxWx3 uint8 array, top row first."""
    gl.glPixelStorei(gl.GL_PACK_ALIGNMENT, 1)
    data = gl.glReadPixels(0, 0, int(width), int(height), gl.GL_RGB, gl.GL_UNSIGNED_BYTE)
    if not isinstance(data, (bytes, bytearray)):
        data = np.asarray(data, dtype=np.uint8).tobytes()
    img = np.frombuffer(data, dtype=np.uint8).reshape(int(height), int(width), 3)
    return np.ascontiguousarray(img[::-1])
