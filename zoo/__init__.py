"""Shipped artifacts of the tfladder zoo (installed as `tfladder._zoo`).

Each folder `<variant>/` holds `config.json`, `saved_model/` (the SavedModel
export, which also holds the Keras weights), a model card (`README.md`, `metrics.json`), figures and
`SHA256SUMS`. `tfladder.zoo.load(name)` reads them; nothing here is code.
"""
