"""Input pipelines: image loading, bundled photographs and Grain training pipelines."""
