"""The FLOP count used for "fraction of peak" matches the model's arithmetic."""
import keras

import tfladder
from tfladder import benchmarking


def test_train_step_flops_cover_forward_and_backward_matmuls():
    model = tfladder.VAE((28, 28, 1), latent_dims=[8], hidden_units=64, num_hidden_layers=1,
                         seed=0)
    model.compile(keras.optimizers.Adam(1e-3))
    batch = 32
    # Dense layers: encoder 784->64, heads 64->8 (x2), decoder 8->64, head 64->784.
    forward = 2 * batch * (784 * 64 + 2 * 64 * 8 + 8 * 64 + 64 * 784)
    flops = benchmarking.train_step_flops(model, batch)
    # Backward needs about two matmuls per forward matmul; the rest is elementwise.
    assert 2.5 * forward < flops < 6 * forward, (flops, forward)
