"""Labelled image grids for scripts (X/Y/Z plot, Prompt matrix): cells in rows and columns, a label
above each column and left of each row, text wrapped to the cell, drawn with Pillow's built-in font
(no font file needed)."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
FADED = (153, 153, 153)  # a "-" label (Prompt matrix: the option left out)


def _font(cell_width: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in font, sized for the cell: a FreeTypeFont wherever Pillow has FreeType (its
    wheels do); without it Pillow gives a bitmap font, which has no `size` to lay the labels out by."""
    font = ImageFont.load_default(size=max(10, min(28, cell_width // 12)))
    assert isinstance(font, ImageFont.FreeTypeFont), "Pillow was built without FreeType"
    return font


def _wrap(text: str, font, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """`text` in lines no wider than `width` (a word longer than that gets its own line)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}".strip()
            if line and draw.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _label_block(labels: list[str], font, width: int, draw: ImageDraw.ImageDraw) -> list[list[str]]:
    return [_wrap(label, font, width, draw) for label in labels]


def labelled_grid(cells: list[list[Image.Image | None]], column_labels: list[str], row_labels: list[str],
                  faded: set[str] | None = None, title: str = "") -> Image.Image:
    """`cells[row][col]` (None: an empty cell) under `column_labels`, beside `row_labels`, with
    an optional `title` line on top. Labels in `faded` are drawn grey. Every cell takes the size of
    the first image."""
    first = next(image for row in cells for image in row if image is not None)
    width, height = first.size
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = _font(width)
    line_height = int(font.size * 1.25)
    column_lines = _label_block(column_labels, font, width - 8, scratch) if any(column_labels) else []
    row_width = width if any(row_labels) else 0
    row_lines = _label_block(row_labels, font, row_width - 8, scratch) if row_width else []
    top = (max(len(lines) for lines in column_lines) * line_height + 8) if column_lines else 0
    title_height = (line_height + 8) if title else 0
    columns = max(len(row) for row in cells)
    grid = Image.new("RGB", (row_width + columns * width, title_height + top + len(cells) * height), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    faded = faded or set()
    if title:
        draw.text((row_width + 4, 4), title, font=font, fill=INK)
    for col, lines in enumerate(column_lines):
        for index, line in enumerate(lines):
            x = row_width + col * width + (width - draw.textlength(line, font=font)) / 2
            draw.text((x, title_height + 4 + index * line_height), line, font=font, fill=FADED if column_labels[col] in faded else INK)
    for row, lines in enumerate(row_lines):
        y0 = title_height + top + row * height + (height - len(lines) * line_height) / 2
        for index, line in enumerate(lines):
            x = (row_width - draw.textlength(line, font=font)) / 2
            draw.text((x, y0 + index * line_height), line, font=font, fill=FADED if row_labels[row] in faded else INK)
    for row, images in enumerate(cells):
        for col, image in enumerate(images):
            if image is not None:
                grid.paste(image.convert("RGB").resize((width, height)) if image.size != (width, height) else image.convert("RGB"),
                           (row_width + col * width, title_height + top + row * height))
    return grid


def side_by_side(grids: list[Image.Image], labels: list[str], gap: int = 16) -> Image.Image:
    """Several grids in a row, each with its label above (X/Y/Z plot's Z axis)."""
    if len(grids) == 1:
        return grids[0]
    font = _font(max(g.width for g in grids) // max(1, len(grids)))
    line_height = int(font.size * 1.25) + 8
    width = sum(g.width for g in grids) + gap * (len(grids) - 1)
    height = max(g.height for g in grids) + line_height
    out = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(out)
    x = 0
    for grid, label in zip(grids, labels):
        draw.text((x + (grid.width - draw.textlength(label, font=font)) / 2, 4), label, font=font, fill=INK)
        out.paste(grid, (x, line_height))
        x += grid.width + gap
    return out
