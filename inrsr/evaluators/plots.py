"""Matplotlib figures written to files: the Agg backend, axis labels, grid and legend, a scale axis, save and close."""


def subplots(nrows: int = 1, ncols: int = 1, figsize=(6, 4)):
  """A figure and its axes on the file-only Agg backend (no display needed)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt.subplots(nrows, ncols, figsize=figsize)


def decorate(ax, xlabel: str, ylabel: str, legend_size: int = 8) -> None:
  """Axis labels, a light grid and the legend."""
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=legend_size)


def scale_axis(ax, scales) -> None:
  """A log2 x axis with a tick "x<s>" at each of `scales` (numbers or their strings)."""
  ax.set_xscale("log", base=2)
  ax.set_xticks([float(s) for s in scales], [f"x{float(s):g}" for s in scales])


def save(fig, path, dpi: int = 120) -> None:
  """Lay out, write to `path` and close the figure."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  plt.close(fig)
