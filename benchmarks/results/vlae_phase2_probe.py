"""Issue 12 probe: the second (likelihood) phase alone, from a shipped colour VLAE.

python benchmarks/results/vlae_phase2_probe.py --data svhn_subset.npz \
    [--variant vlae_svhn] [--num_components 1] [--head_filters 64] [--head_layers 1] \
    [--epochs 4] --out ../runs/phase2_probe/NAME

Loads the shipped variant, builds the same model with another likelihood head
(`head_filters`, `head_layers`) and / or a per-pixel mixture in it
(`num_components`), copies every weight but the head's (so the generator, the
inference rungs and the per-channel scales start as shipped and the head at
zero), switches to `set_training_phase("likelihood")` and trains with Adam
1e-3, batch 100, 90 steps per epoch. After every epoch it writes the training
ELBO (running mean over the epoch) and the test ELBO on the 1,000 test images
(one posterior sample per image, seed 7), both in bits/dim, to `OUT/log.json`.
Both arms of a comparison start from the same weights: tries s6 and s7 of
`vlae_colour_recipes.md` ran this (s6 before it moved into the repository).
"""
import json
import math
import pathlib
import time

import keras
import numpy as np
from absl import app, flags

import tfladder
from tfladder import data

FLAGS = flags.FLAGS
flags.DEFINE_string("variant", "vlae_svhn", "A shipped colour VLAE with a likelihood head.")
flags.DEFINE_string("data", None, "The variant's .npz (train and test splits).", required=True)
flags.DEFINE_integer("num_components", 1, "Components of the per-pixel mixture.")
flags.DEFINE_integer("head_filters", 64, "Width of the head's hidden convolutions.")
flags.DEFINE_integer("head_layers", 1, "Hidden convolutions of the head.")
flags.DEFINE_integer("epochs", 4, "Epochs of 90 steps.")
flags.DEFINE_string("out", None, "Output folder (log.json, model.weights.h5).", required=True)


def bits_per_dim(model, images, batch=250):
    elbo = np.concatenate([model.elbo(images[i:i + batch], seed=7).numpy()
                           for i in range(0, len(images), batch)])
    return -float(np.mean(elbo)) / (int(np.prod(images.shape[1:])) * math.log(2))


def main(argv):
    del argv
    out = pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    shipped = tfladder.zoo.load(FLAGS.variant)
    config = shipped.get_config()
    config.update(head_filters=FLAGS.head_filters, head_layers=FLAGS.head_layers,
                  observation={**config["observation"],
                               "num_components": FLAGS.num_components})
    model = tfladder.VariationalLadderAutoencoder.from_config(config)
    model.build()
    source = [w for w in shipped.weights if "likelihood_head" not in w.path]
    target = [w for w in model.weights if "likelihood_head" not in w.path]
    if [w.shape for w in source] != [w.shape for w in target]:
        raise ValueError("the probe's model does not match the shipped one outside the head")
    for a, b in zip(source, target):
        b.assign(a)
    test = data.load_arrays(FLAGS.data, "test")
    start = bits_per_dim(model, test)
    print(f"start (head at zero) {start:.4f}, shipped {bits_per_dim(shipped, test):.4f}",
          flush=True)
    model.set_training_phase("likelihood")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.iterations.assign(10 ** 5)           # past the KL warm-up
    train = data.load(FLAGS.data, "train", 100, shuffle=True, seed=0, repeat=True)
    pixels = int(np.prod(test.shape[1:]))
    log = [dict(epoch=0, test_bits=start)]
    (out / "log.json").write_text(json.dumps(log, indent=1))
    for epoch in range(FLAGS.epochs):
        started = time.time()
        history = model.fit(train, steps_per_epoch=90, epochs=1, verbose=0).history
        log.append(dict(epoch=epoch + 1,
                        train_bits=-history["elbo"][-1] / (pixels * math.log(2)),
                        test_bits=bits_per_dim(model, test),
                        seconds=round(time.time() - started, 1)))
        print(log[-1], flush=True)
        (out / "log.json").write_text(json.dumps(log, indent=1))
    model.save_weights(str(out / "model.weights.h5"))


if __name__ == "__main__":
    app.run(main)
