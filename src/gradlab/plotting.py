"""One figure style: titles, labelled axes with units, legends, a colour-blind-safe palette."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Okabe & Ito (2008), safe for the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

plt.rcParams.update(
    {
        "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
        "axes.grid": True,
        "grid.alpha": 0.3,
        "figure.dpi": 100,
        "savefig.dpi": 120,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 8,
        "figure.autolayout": True,
    }
)


# The report shows figures 960 px wide: at savefig.dpi 120 a figure of MAX_WIDTH inches (1440 px) keeps its
# 10-pt axis text at ~11 px there; wider figures are laid out as rows of panels instead.
MAX_WIDTH = 12.0
MIN_PANEL = 4.5  # inches: narrower panels are not shrunk to fit a row, they wrap to the next row


def panels(n: int, width: float) -> tuple[int, int, float]:
    """(rows, columns, panel width) for ``n`` panels of ``width`` inches within MAX_WIDTH: one row, shrunk if it
    stays readable, else rows of as many panels as fit."""
    if n * width <= MAX_WIDTH:
        return 1, n, width
    if MAX_WIDTH / n >= MIN_PANEL:
        return 1, n, MAX_WIDTH / n
    cols = max(1, int(MAX_WIDTH // width))
    return -(-n // cols), cols, width


def figure(title: str, ncols: int = 1, width: float = 6.0, height: float = 4.0):
    """A figure with ``ncols`` panels and a title; returns (fig, axes). Panels that would make the figure wider
    than MAX_WIDTH go on further rows (unused cells of the last row are removed)."""
    rows, cols, w = panels(ncols, width)
    fig, grid = plt.subplots(rows, cols, figsize=(w * cols, height * rows), squeeze=False)
    fig.suptitle(title)
    axes = list(grid.flat)
    for ax in axes[ncols:]:
        fig.delaxes(ax)
    return fig, axes[:ncols] if ncols > 1 else axes[0]


def label(ax, title: str, xlabel: str, ylabel: str, logx: bool = False, logy: bool = False, legend=True) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend()


def _wrap(text, room: float) -> bool:
    """Wrap a title onto more lines when it is wider than ``room`` pixels; True when it changed."""
    import textwrap

    width = text.get_window_extent().width
    if not text.get_text() or width <= room:
        return False
    chars = max(20, int(len(text.get_text()) * room / width) - 2)
    text.set_text("\n".join(textwrap.wrap(text.get_text().replace("\n", " "), chars)))
    return True


def fit_titles(fig) -> None:
    """No clipped titles: a panel title wider than its panel, or a figure title wider than the figure, is
    wrapped, and the layout redone."""
    fig.canvas.draw()
    changed = False
    for ax in fig.axes:
        if ax.get_visible() and ax.get_title():
            changed |= _wrap(ax.title, ax.get_window_extent().width * 1.05)
    if fig._suptitle is not None:
        changed |= _wrap(fig._suptitle, fig.bbox.width * 0.95)
    if changed and fig.get_layout_engine() is not None:
        fig.canvas.draw()
        fig.get_layout_engine().execute(fig)


def save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fit_titles(fig)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path
