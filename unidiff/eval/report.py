"""Evaluation reports: labelled image grids, and one self-contained HTML page plus metrics.json.

The report directory holds everything it shows (assets are saved or copied into `assets/`
and referenced by relative path), so it can be zipped, attached to an issue or opened from
a CI artifact.  Files are written atomically so a crashed run never leaves a half report.
"""
from __future__ import annotations

import html
import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from unidiff.files import atomic_write, json_text

SECTION_KEYS = {"title", "text", "images", "videos", "metrics"}
_CSS = """body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}td.num{text-align:right;font-family:monospace}
img,video{image-rendering:pixelated;margin:4px;vertical-align:top}figure{display:inline-block;margin:4px}
figcaption{font-size:small;max-width:256px}"""


def image_grid(images: list[np.ndarray], captions: list[str], cols: int, tile: int | None = None,
               font_size: int = 11) -> np.ndarray:
    """uint8 RGB grid of `images` with each caption wrapped under its tile (tiles upscaled to `tile` px)."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if not images:
        raise ValueError("no images for the grid")
    if int(cols) != cols or cols <= 0:
        raise ValueError(f"cols must be a positive integer, got {cols!r}")
    for img in images:
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError("grid images must be uint8 (H, W, 3) arrays, got "
                             f"{getattr(img, 'dtype', type(img).__name__)} {getattr(img, 'shape', '')}")
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    scale = max(1, (tile or max(h, w, 128)) // max(h, w))
    tw, th = w * scale, h * scale
    font = ImageFont.load_default(size=font_size)
    char_w = max(1.0, font.getlength("abcdefghijklmnopqrstuvwxyz") / 26)
    wrapped = [textwrap.wrap(str(c), max(4, int((tw - 4) / char_w))) or [""] for c in captions]
    line_h = font_size + 3
    label_h = line_h * max(len(lines) for lines in wrapped) + 6
    rows = -(-len(images) // cols)
    cols = min(cols, len(images))
    pad = 4
    canvas = Image.new("RGB", (cols * (tw + pad) + pad, rows * (th + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (img, lines) in enumerate(zip(images, wrapped)):
        r, c = divmod(k, cols)
        x, y = pad + c * (tw + pad), pad + r * (th + label_h + pad)
        canvas.paste(Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale),
                                                  Image.NEAREST), (x, y))
        for j, line in enumerate(lines):
            draw.text((x + 2, y + th + 3 + j * line_h), line, fill="black", font=font)
    return np.asarray(canvas)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"metrics value of type {type(obj).__name__} is not JSON-serialisable")


def _flatten(metrics: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Scalar leaves of a nested dict as (dotted key, value); lists are left to metrics.json."""
    rows = []
    for k, v in metrics.items():
        if isinstance(v, dict):
            rows += _flatten(v, f"{prefix}{k}.")
        elif v is None or isinstance(v, (str, bool, int, float, np.generic)):
            rows.append((f"{prefix}{k}", v))
    return rows


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return str(v)


def _table(metrics: dict) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td class=num>{html.escape(_fmt(v))}</td></tr>"
                   for k, v in _flatten(metrics))
    return f"<table>{rows}</table>" if rows else ""


def _asset(item, out_dir: Path, name: str) -> str:
    """Relative path of an image/video inside out_dir: arrays saved as PNG, outside files copied."""
    assets = out_dir / "assets"
    assets.mkdir(exist_ok=True)
    if isinstance(item, np.ndarray):
        path = assets / f"{name}.png"
        atomic_write(path, lambda f: Image.fromarray(item).save(f, format="PNG"))
        return path.relative_to(out_dir).as_posix()
    src = Path(item).resolve()
    if not src.is_file():
        raise FileNotFoundError(f"report asset {item} does not exist")
    if not src.is_relative_to(out_dir):
        dst = assets / src.name
        shutil.copyfile(src, dst)
        src = dst
    return src.relative_to(out_dir).as_posix()


def _media(rel: str, caption: str) -> str:
    src = html.escape(rel, quote=True)
    tag = (f'<video src="{src}" width=256 controls loop muted autoplay playsinline></video>'
           if rel.lower().endswith((".mp4", ".webm")) else f'<img src="{src}" alt="{html.escape(caption)}">')
    return f"<figure>{tag}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _section(sec: dict, out_dir: Path, index: int) -> str:
    if not isinstance(sec, dict) or "title" not in sec:
        raise ValueError(f"section {index} must be a dict with a 'title'")
    unknown = set(sec) - SECTION_KEYS
    if unknown:
        raise ValueError(f"section {sec['title']!r} has unknown keys {sorted(unknown)}; allowed {sorted(SECTION_KEYS)}")
    slug = re.sub(r"[^a-z0-9]+", "_", str(sec["title"]).lower()).strip("_") or "section"
    parts = [f"<h2>{html.escape(str(sec['title']))}</h2>"]
    if sec.get("text"):
        parts.append(f"<p>{html.escape(str(sec['text']))}</p>")
    if sec.get("metrics"):
        parts.append(_table(sec["metrics"]))
    for j, img in enumerate(sec.get("images", [])):
        rel = _asset(img, out_dir, f"{index:02d}_{slug}_{j}")
        parts.append(_media(rel, Path(rel).name))
    for vid in sec.get("videos", []):
        rel = _asset(vid, out_dir, "")
        parts.append(_media(rel, Path(rel).stem))
    return "<section>" + "\n".join(parts) + "</section>"


def write_report(out_dir, metrics: dict, sections: list, title: str = "unidiff evaluation") -> Path:
    """Write `report.html` (metrics table + sections) and `metrics.json` into out_dir; returns the HTML path.

    A section is a dict: `title`, optional `text`, `metrics` (dict, shown as a table), `images`
    (uint8 arrays or image paths) and `videos` (MP4 or GIF paths, e.g. evaluate_policy's).
    """
    if not isinstance(metrics, dict):
        raise TypeError(f"metrics must be a dict, got {type(metrics).__name__}")
    payload = json_text(metrics, default=_json_default)  # unserialisable metrics fail before any file is written
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    body = "\n".join(_section(s, out, i) for i, s in enumerate(sections))
    head = html.escape(title)
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>{head}</title>"
            f"<style>{_CSS}</style></head><body><h1>{head}</h1>"
            f"<h2>Metrics</h2>{_table(metrics)}<p><a href=\"metrics.json\">metrics.json</a></p>\n{body}</body></html>")
    atomic_write(out / "metrics.json", lambda f: f.write(payload.encode()))
    atomic_write(out / "report.html", lambda f: f.write(page.encode()))
    return out / "report.html"
