"""Take the README screenshot: `streamcore chat` in a real terminal, rendered to a PNG.

End to end, so it can be re-run after any change to the chat's look::

    /tmp/shotvenv/bin/python tools/screenshot.py docs/chat.png

1. Starts a private tmux server (its socket in a temporary folder, no user config) with a pane of
   100x36 cells running a clean shell: ``TERM=xterm-256color``,
   ``COLORTERM=truecolor``, no ``*_API_KEY`` (so the chat uses the built-in
   emulator), a throwaway ``STREAMCORE_DATA_DIR``.
2. Types ``streamcore chat`` (the project's console script), then a prompt,
   then ``/stats``, and waits for each step by polling the pane's text (the
   chat's prompt, then the stats line) -- never a fixed sleep.
3. Captures the pane with its escape codes (``tmux capture-pane -e``), replays
   them into pyte (a terminal emulator, so colours carried from line to line,
   wide characters and combining marks land where the terminal put them), and
   draws the cells with Pillow: DejaVu Sans Mono, WenQuanYi Zen Hei for CJK,
   Noto Color Emoji for emoji, in a window frame, quantized to keep it small.

pyte and Pillow are tools for this script only, not streamcore dependencies:
keep them out of the project's ``.venv`` and use a separate one::

    python3 -m venv /tmp/shotvenv && /tmp/shotvenv/bin/pip install pyte Pillow

System packages (Debian): ``tmux fonts-dejavu-core fonts-wqy-zenhei
fonts-noto-color-emoji``. ``--capture FILE`` also keeps the raw capture;
``--from-capture FILE`` renders a saved one without running anything.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyte
import pyte.screens
from PIL import Image, ImageDraw, ImageFont
from wcwidth import wcwidth

REPO = Path(__file__).resolve().parent.parent
PROMPT = "What is SSE?"  # the emulator answers it with a list, inline code and a Python block
FONTS = {
    "regular": "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "bold": "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "italic": "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Oblique.ttf",
    "bold-italic": "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-BoldOblique.ttf",
    "cjk": "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "emoji": "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
}
EMOJI_SIZE = 109  # the one size Noto Color Emoji's bitmaps come in
# Not passed to the chat: keys (so it uses the emulator), and what would change its look.
DROPPED = re.compile(r".*_API_KEY$|^STREAMCORE_(PROVIDER|MODEL)$|^NO_COLOR$|^TMUX")
WAIT_SECONDS = 30.0

# A dark theme. Names are pyte's for SGR 30-37 / 90-97 (pyte says "brown" for yellow).
DEFAULT_FG = (0xD4, 0xD7, 0xDD)
DEFAULT_BG = (0x16, 0x1B, 0x22)
PALETTE = {
    "black": (0x3A, 0x40, 0x4A),
    "red": (0xF0, 0x6C, 0x6C),
    "green": (0x8C, 0xC2, 0x65),
    "brown": (0xE5, 0xC0, 0x7B),
    "blue": (0x61, 0xAF, 0xEF),
    "magenta": (0xD1, 0x8A, 0xF0),
    "cyan": (0x56, 0xC8, 0xD8),
    "white": (0xD4, 0xD7, 0xDD),
    "brightblack": (0x6B, 0x73, 0x80),
    "brightred": (0xFF, 0x8A, 0x8A),
    "brightgreen": (0xA8, 0xDB, 0x82),
    "brightbrown": (0xF5, 0xD4, 0x96),
    "brightblue": (0x82, 0xC4, 0xFF),
    "brightmagenta": (0xE0, 0xA8, 0xFF),
    "brightcyan": (0x7F, 0xDD, 0xEA),
    "brightwhite": (0xFF, 0xFF, 0xFF),
}
DIM = "dim/"  # prefix on a cell's fg: SGR 2 (faint), which pyte does not keep
TITLE_BAR = (0x24, 0x29, 0x31)
LIGHTS = ((0xFF, 0x5F, 0x57), (0xFE, 0xBC, 0x2E), (0x28, 0xC8, 0x40))

Colour = tuple[int, int, int]


# --- Running the chat in tmux ----------------------------------------------------------------


class Tmux:
    """One private tmux server (own socket, no config) with one pane."""

    def __init__(self, socket: Path, env: dict[str, str]) -> None:
        self.socket = str(socket)
        self.env = env

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-u", "-S", self.socket, "-f", "/dev/null", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    def type(self, line: str) -> None:
        self("send-keys", "-t", "shot", "-l", line)  # -l: literally, no key names
        self("send-keys", "-t", "shot", "Enter")

    def lines(self) -> list[str]:
        return self("capture-pane", "-p", "-t", "shot").splitlines()

    def wait_for(self, what: str, done: Callable[[list[str]], bool]) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not done(lines := self.lines()):
            if time.monotonic() > deadline:
                shown = "\n".join(lines)
                sys.exit(
                    f"screenshot: no {what} after {WAIT_SECONDS:.0f} s; the pane shows:\n{shown}"
                )
            time.sleep(0.05)


def _last_line(lines: list[str]) -> str:
    filled = [line for line in lines if line.strip()]
    return filled[-1].rstrip() if filled else ""


def _at_chat_prompt(lines: list[str]) -> bool:
    return _last_line(lines) == "›"


def run_chat(streamcore: Path, prompt: str, columns: int, rows: int) -> tuple[str, int, int]:
    """Run the chat in tmux; return the pane's capture with escapes, and the cursor (x, y)."""
    env = {k: v for k, v in os.environ.items() if not DROPPED.match(k)}
    with tempfile.TemporaryDirectory(prefix="streamcore-shot-") as home:
        shell_env = {
            "TERM": "xterm-256color",
            "COLORTERM": "truecolor",
            "LANG": "C.UTF-8",
            "PS1": "$ ",
            "HISTFILE": "/dev/null",
            "PATH": f"{streamcore.parent}:{env.get('PATH', '/usr/bin:/bin')}",
            "STREAMCORE_DATA_DIR": str(Path(home) / "data"),
        }
        command = ["env", *(f"{k}={v}" for k, v in shell_env.items())]
        command += ["bash", "--norc", "--noprofile", "-i"]
        tmux = Tmux(Path(home) / "tmux.socket", env)  # goes with the folder
        size = ("-x", str(columns), "-y", str(rows))
        tmux("new-session", "-d", "-s", "shot", *size, "-c", home, " ".join(map(_quote, command)))
        try:
            tmux.wait_for("shell prompt", lambda lines: _last_line(lines) == "$")
            tmux.type(streamcore.name + " chat")
            tmux.wait_for("chat prompt", _at_chat_prompt)
            tmux.type(prompt)
            tmux.wait_for(
                "stats line",
                lambda lines: (
                    _at_chat_prompt(lines) and any(line.startswith("first token") for line in lines)
                ),
            )
            tmux.type("/stats")
            tmux.wait_for(
                "/stats answer",
                lambda lines: (
                    _at_chat_prompt(lines)
                    and any(line.startswith("Last answer:") for line in lines)
                ),
            )
            capture = tmux("capture-pane", "-e", "-N", "-p", "-t", "shot")
            x, y = tmux("display-message", "-p", "-t", "shot", "#{cursor_x} #{cursor_y}").split()
        finally:
            subprocess.run(["tmux", "-S", tmux.socket, "kill-server"], env=env, check=False)
    return capture, int(x), int(y)


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


# --- Replaying the capture -------------------------------------------------------------------


def _cells(char: str) -> int:
    # tmux (glibc's wcwidth) gives a regional indicator one cell, so a flag takes two;
    # wcwidth gives each indicator two. Follow the terminal the capture came from.
    if 0x1F1E6 <= ord(char) <= 0x1F1FF:
        return 1
    return int(wcwidth(char))


class Screen(pyte.Screen):
    """pyte's screen, keeping SGR 2 (faint) as a prefix on the foreground colour."""

    dim = False

    def select_graphic_rendition(self, *attrs: int) -> None:
        kept: list[int] = []
        params = list(attrs)
        while params:
            attr = params.pop(0)
            if attr in (38, 48):  # 38;5;N and 38;2;R;G;B: the numbers are not attributes
                size = 2 if params[:1] == [5] else 4 if params[:1] == [2] else 0
                kept += [attr, *params[:size]]
                del params[:size]
                continue
            if attr == 0 or attr == 22:
                self.dim = False
            elif attr == 2:
                self.dim = True
                continue
            kept.append(attr)
        if kept or not attrs:
            super().select_graphic_rendition(*kept)
        fg = self.cursor.attrs.fg.removeprefix(DIM)
        self.cursor.attrs = self.cursor.attrs._replace(fg=DIM + fg if self.dim else fg)


def replay(capture: str, columns: int, rows: int) -> Screen:
    """The screen the captured lines (and the SGR state they carry over) produce."""
    pyte.screens.wcwidth = _cells
    screen = Screen(columns, rows)
    stream = pyte.Stream(screen)
    stream.feed("\r\n".join(capture.rstrip("\n").split("\n")[:rows]))
    return screen


# --- Drawing ---------------------------------------------------------------------------------


def _colour(name: str, default: Colour) -> Colour:
    if name == "default":
        return default
    if name in PALETTE:
        return PALETTE[name]
    return (int(name[0:2], 16), int(name[2:4], 16), int(name[4:6], 16))


def _blend(a: Colour, b: Colour, t: float) -> Colour:
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return (r, g, bl)


def _is_emoji(text: str) -> bool:
    o = ord(text[0])
    return o >= 0x1F000 or 0x2600 <= o <= 0x27BF or 0x2B00 <= o <= 0x2BFF


@dataclass
class Painter:
    """Draws pyte cells on a Pillow image, ``scale`` pixels per design pixel."""

    scale: int

    def __post_init__(self) -> None:
        size = 15 * self.scale
        self.fonts = {
            style: ImageFont.truetype(FONTS[style], size)
            for style in ("regular", "bold", "italic", "bold-italic")
        }
        # WenQuanYi Zen Hei Mono, a little larger: its glyphs are narrower than two cells.
        self.cjk = ImageFont.truetype(FONTS["cjk"], round(size * 1.1), index=1)
        self.emoji_font = ImageFont.truetype(
            FONTS["emoji"], EMOJI_SIZE, layout_engine=ImageFont.Layout.RAQM
        )
        regular = self.fonts["regular"]
        self.cell_w = round(regular.getlength("M"))
        ascent, descent = regular.getmetrics()
        self.cell_h = round((ascent + descent) * 1.12)
        self.baseline = (self.cell_h - ascent - descent) // 2 + ascent
        self.missing = self._ink(regular, "\uffff")  # what DejaVu draws for a missing glyph
        self.has_glyph: dict[str, bool] = {}
        self.emoji: dict[str, Image.Image] = {}

    def _ink(self, font: ImageFont.FreeTypeFont, text: str) -> bytes:
        mask = Image.new("L", (3 * self.cell_w, self.cell_h))
        ImageDraw.Draw(mask).text((0, self.baseline), text, font=font, fill=255, anchor="ls")
        return mask.tobytes()

    def font_for(self, text: str, bold: bool, italic: bool) -> ImageFont.FreeTypeFont:
        style = "bold-italic" if bold and italic else "bold" if bold else "italic" if italic else ""
        font = self.fonts[style or "regular"]
        if text not in self.has_glyph:
            self.has_glyph[text] = self._ink(font, text) != self.missing
        return font if self.has_glyph[text] else self.cjk

    def emoji_image(self, text: str, cells: int) -> Image.Image:
        """``text`` in colour, fitted to ``cells`` cells (cached)."""
        key = f"{text}\x00{cells}"
        if key not in self.emoji:
            big = Image.new("RGBA", (EMOJI_SIZE * 3, EMOJI_SIZE * 2))
            ImageDraw.Draw(big).text((0, 0), text, font=self.emoji_font, embedded_color=True)
            big = big.crop(big.getbbox())
            side = min(cells * self.cell_w, self.cell_h)
            ratio = min(cells * self.cell_w / big.width, side / big.height)
            size = (max(1, round(big.width * ratio)), max(1, round(big.height * ratio)))
            self.emoji[key] = big.resize(size, Image.Resampling.LANCZOS)
        return self.emoji[key]

    def draw(self, screen: Screen, cursor: tuple[int, int]) -> Image.Image:
        """The screen as an image of columns x rows cells, with a block cursor."""
        image = Image.new("RGB", (screen.columns * self.cell_w, screen.lines * self.cell_h))
        image.paste(DEFAULT_BG, (0, 0, image.width, image.height))
        pen = ImageDraw.Draw(image)
        for y in range(screen.lines):
            row = screen.buffer[y]
            x = 0
            while x < screen.columns:
                char = row[x]
                text = unicodedata.normalize("NFC", char.data)
                span = 1
                if text and 0x1F1E6 <= ord(text[0]) <= 0x1F1FF and x + 1 < screen.columns:
                    text += row[x + 1].data  # a flag: two regional indicators, drawn as one
                    span = 2
                elif text and _cells(text[0]) == 2:
                    span = 2
                fg = _colour(char.fg.removeprefix(DIM), DEFAULT_FG)
                bg = _colour(char.bg, DEFAULT_BG)
                if char.reverse:
                    fg, bg = bg, fg
                if char.fg.startswith(DIM):
                    fg = _blend(fg, bg, 0.45)
                left, top = x * self.cell_w, y * self.cell_h
                right = left + span * self.cell_w
                if bg != DEFAULT_BG:
                    pen.rectangle((left, top, right - 1, top + self.cell_h - 1), fill=bg)
                if (x, y) == cursor:
                    pen.rectangle((left, top, right - 1, top + self.cell_h - 1), fill=DEFAULT_FG)
                if text.strip() and _is_emoji(text):
                    glyph = self.emoji_image(text, span)
                    at = (
                        left + (right - left - glyph.width) // 2,
                        top + (self.cell_h - glyph.height) // 2,
                    )
                    image.paste(glyph, at, glyph)
                elif text.strip():
                    font = self.font_for(text, char.bold, char.italics)
                    mid = left + (right - left) / 2
                    pen.text((mid, top + self.baseline), text, font=font, fill=fg, anchor="ms")
                if char.underscore:
                    under = top + self.baseline + 2 * self.scale
                    pen.rectangle((left, under, right - 1, under + self.scale - 1), fill=fg)
                x += span
        return image

    def frame(self, terminal: Image.Image, title: str) -> Image.Image:
        """The terminal in a window with a title bar, on a transparent background."""
        s = self.scale
        pad, bar, radius = 14 * s, 30 * s, 10 * s
        width, height = terminal.width + 2 * pad, terminal.height + bar + pad
        window = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        pen = ImageDraw.Draw(window)
        pen.rounded_rectangle((0, 0, width - 1, height - 1), radius, fill=DEFAULT_BG)
        pen.rounded_rectangle((0, 0, width - 1, bar + radius), radius, fill=TITLE_BAR)
        pen.rectangle((0, bar, width - 1, bar + radius), fill=DEFAULT_BG)
        for i, light in enumerate(LIGHTS):
            cx, cy, r = pad + 6 * s + i * 20 * s, bar // 2, 6 * s
            pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=light)
        pen.text(
            (width / 2, bar / 2),
            title,
            font=ImageFont.truetype(FONTS["regular"], 13 * s),
            fill=_blend(DEFAULT_FG, TITLE_BAR, 0.35),
            anchor="mm",
        )
        window.paste(terminal, (pad, bar))
        return window


def render(
    capture: str, cursor: tuple[int, int], columns: int, rows: int, scale: int
) -> Image.Image:
    """The captured pane as a framed, colour-quantized image."""
    painter = Painter(scale)
    terminal = painter.draw(replay(capture, columns, rows), cursor)
    window = painter.frame(terminal, "streamcore chat")
    return window.quantize(colors=96, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("output", type=Path, help="the PNG to write, e.g. docs/chat.png")
    parser.add_argument(
        "--streamcore",
        type=Path,
        default=REPO / ".venv" / "bin" / "streamcore",
        help="the console script to run (default: the repo's .venv)",
    )
    parser.add_argument("--prompt", default=PROMPT, help=f"what to ask (default: {PROMPT!r})")
    parser.add_argument("--columns", type=int, default=100)
    parser.add_argument("--rows", type=int, default=36)
    parser.add_argument("--scale", type=int, default=2, help="pixels per design pixel (2: HiDPI)")
    parser.add_argument("--capture", type=Path, help="also save the raw capture here")
    parser.add_argument("--from-capture", type=Path, help="render this saved capture instead")
    args = parser.parse_args(argv)

    started = time.monotonic()
    if args.from_capture:
        capture = args.from_capture.read_text(encoding="utf-8")
        cursor = (-1, -1)
    else:
        if shutil.which("tmux") is None:
            sys.exit("screenshot: tmux is not installed (Debian: apt-get install tmux)")
        if not args.streamcore.exists():
            sys.exit(f"screenshot: no {args.streamcore}; run `make chat` once to create .venv")
        capture, x, y = run_chat(args.streamcore, args.prompt, args.columns, args.rows)
        cursor = (x, y)
    if args.capture:
        args.capture.write_text(capture, encoding="utf-8")
    image = render(capture, cursor, args.columns, args.rows, args.scale)
    image.save(args.output, optimize=True)
    size = args.output.stat().st_size
    took = time.monotonic() - started
    print(f"{args.output}: {image.width}x{image.height} px, {size / 1024:.0f} KiB, {took:.1f} s")


if __name__ == "__main__":
    main()
