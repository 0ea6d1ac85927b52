"""Shipped artifacts of the tfladder zoo (installed as `tfladder._zoo`).

Each folder `<variant>/` holds `config.json`, `model.weights.h5`,
`saved_model/`, a model card (`README.md`, `metrics.json`), figures and
`SHA256SUMS`. `tfladder.zoo.load(name)` reads them; nothing here is code.
"""
