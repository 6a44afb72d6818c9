r"""Upscale with a trained run: `python -m experiments.upscale --workdir=DIR --input=a.png --scale=7.5 --output=b.png`.

--size=WxH instead of --scale sets the output size; --input may be a folder (then --output is a folder).
Video: --input=clip.mp4 (or a GIF, or a frame folder with --clip) and --output=out.mp4 or a folder of frames;
frame k of T is queried at t = -1 + (2k + 1) / T, as in training.
A PNG is written band by band as inference produces its rows (--chunk query points at a time) and a clip one
frame at a time, so memory does not grow with the output size; an output its format cannot hold is refused.
"""

from absl import app
from absl import flags

from inrsr import upscaling

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of a training run.")
_INPUT = flags.DEFINE_string("input", None, "Image file or folder of images.")
_OUTPUT = flags.DEFINE_string("output", None, "Output file (or folder for a folder input).")
_SCALE = flags.DEFINE_float("scale", None, "Output size = input size x scale.")
_SIZE = flags.DEFINE_string("size", None, "Output size WIDTHxHEIGHT (instead of --scale).")
_CLIP = flags.DEFINE_bool("clip", False, "Treat an input folder as the frames of one clip.")
_CHUNK = flags.DEFINE_integer("chunk", 65536, "Query points per inference call (bounds memory).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for path in upscaling.upscale_paths(_WORKDIR.value, _INPUT.value, _OUTPUT.value, scale=_SCALE.value,
                                      size=_SIZE.value, clip=_CLIP.value, chunk=_CHUNK.value, progress=_PROGRESS.value):
    print(path)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir", "input", "output"])
  app.run(main)
