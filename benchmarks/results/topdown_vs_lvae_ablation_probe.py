"""Ablation probe (issue 13): 5-layer LVAE without BN / warm-up. Trains a short run and
reports per-layer KL, active units, units above 0.01 nats, and the LVAE merge weight
w = prec_hat / (prec_hat + prec_p) (share of the bottom-up estimate in q) per layer.
usage (from the checkout): python benchmarks/results/topdown_vs_lvae_ablation_probe.py NAME FAMILY BN(0/1) WARMUP_EPOCHS EPOCHS [min_scale]"""
import json, pathlib, sys, time
import numpy as np
import tensorflow as tf
from tfladder import data, evaluation, training, zoo

name, family, bn, warm, epochs = sys.argv[1:6]
min_scale = float(sys.argv[6]) if len(sys.argv) > 6 else 1e-3
model = dict(image_shape=(28, 28, 1), latent_dims=[64, 32, 16, 8, 4],
             hidden_units=[512, 256, 128, 64, 32], activation="leaky_relu",
             batch_norm=bn == "1", observation="bernoulli", min_scale=min_scale)
variant = zoo.Variant(name=name, family=family, description=name, model=model,
                      data=zoo.DataSpec("/work/shared/data/mnist.npz", binarize="dynamic"),
                      recipe=zoo.Recipe(epochs=int(epochs), batch_size=256,
                                        warmup_epochs=float(warm)))
root = pathlib.Path("/work/runs/ablation") / name
t = time.time()
result = training.train(variant, root, verbose=2)
secs = time.time() - t
m = result.model
images = data.load_arrays("/work/shared/data/mnist.npz", "test", limit=500)
images, _ = evaluation.binarize_for_evaluation(images, "dynamic")
x = m.prepare_inputs(images)
inf = m.infer(x, tf.constant([0, 0], tf.int32))
units_kl = [tf.reduce_mean(
    tf.reshape(l.posterior.kl_divergence(l.prior), [500, -1]), 0).numpy() for l in inf.layers]
out = dict(name=name, family=family, bn=bn, warmup=warm, epochs=epochs, min_scale=min_scale,
           train_s=round(secs), elbo=float(tf.reduce_mean(m.elbo(images, seed=0))),
           kl=[float(k.sum()) for k in units_kl],
           units_above_001=[int((k > 0.01).sum()) for k in units_kl])
if family == "lvae":
    d = m.encoder(x)
    ws, sh, sp = [], [], []
    for l in range(m.num_layers):
        if l > 0:
            d = m.upward_mlps[l - 1](d)
        up = m.upward_heads[l](d)
        if l < m.num_layers - 1:
            p = inf.layers[l].prior
            w = (up.scale ** -2) / (up.scale ** -2 + p.scale ** -2)
            ws.append(float(tf.reduce_mean(w)))
            sp.append(float(tf.reduce_mean(tf.math.log(p.scale))))
        sh.append(float(tf.reduce_mean(tf.math.log(up.scale))))
    out.update(merge_weight=ws, mean_log_scale_hat=sh, mean_log_scale_prior=sp)
print("RESULT", json.dumps(out))
(root / "result.json").write_text(json.dumps(out))
