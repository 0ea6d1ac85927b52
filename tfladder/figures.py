"""Image grids: samples and layer-wise traversals (VLAE paper, Figures 5-7).

All functions return `uint8` arrays `[H, W, C]` (C = 1 or 3) ready for
`save_png` or `tf.summary.image`.
"""
import numpy as np
import tensorflow as tf


def image_grid(images, rows, cols, padding=1, pad_value=1.0):
    """Tiles `rows * cols` images `[N, H, W, C]` in [0, 1] into one uint8 image."""
    images = np.asarray(images, np.float32)
    count, height, width, channels = images.shape
    if count != rows * cols:
        raise ValueError(f"image_grid needs rows * cols = {rows * cols} images, got {count}.")
    grid = np.full((rows * (height + padding) + padding, cols * (width + padding) + padding,
                    channels), pad_value, np.float32)
    for index, image in enumerate(images):
        r, c = divmod(index, cols)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        grid[top:top + height, left:left + width] = image
    return (np.clip(grid, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def stack_blocks(blocks, gap=4):
    """Stacks grids vertically with a white gap (one block per latent layer)."""
    width = max(b.shape[1] for b in blocks)
    channels = blocks[0].shape[2]
    parts = []
    for block in blocks:
        padded = np.full((block.shape[0], width, channels), 255, np.uint8)
        padded[:, :block.shape[1]] = block
        parts += [padded, np.full((gap, width, channels), 255, np.uint8)]
    return np.concatenate(parts[:-1], axis=0)


def save_png(array, path):
    """Writes a uint8 `[H, W, C]` array as a PNG file."""
    tf.io.write_file(str(path), tf.io.encode_png(np.asarray(array, np.uint8)))


def sample_grid(model, rows=8, cols=8, seed=0):
    """Ancestral samples (likelihood means) as a `rows x cols` grid."""
    return image_grid(model.sample(rows * cols, seed=seed).numpy(), rows, cols)


def layer_traversals(model, steps=8, repeats=8, seed=0, span=2.0):
    """One image block per latent layer, bottom (first) to top (last).

    For layer l only z_l's noise changes; the noise of every other layer is
    held fixed. A 2-D layer is swept over a `steps x steps` grid on
    `[-span, span]**2` (the VLAE paper's MNIST Figure 5); a wider layer is
    resampled `steps` times (columns) for `repeats` fixed draws of the other
    layers (rows), as in the paper's SVHN / CelebA Figures 6-7.

    Returns:
      A list of uint8 grids, one per layer.
    """
    base_seed = tf.constant([seed, 1], tf.int32)
    blocks = []
    for layer, dim in enumerate(model.latent_dims):
        if dim == 2:
            rows = cols = steps
            fixed = model.prior_noise(1, base_seed)
            axis = np.linspace(-span, span, steps, dtype=np.float32)
            ys, xs = np.meshgrid(axis[::-1], axis, indexing="ij")   # [rows, cols]
            noise = [tf.repeat(eps, rows * cols, axis=0) for eps in fixed]
            noise[layer] = tf.constant(np.stack([xs, ys], -1).reshape(-1, 2))
        else:
            rows, cols = repeats, steps
            fixed = model.prior_noise(rows, base_seed)
            noise = [tf.repeat(eps, cols, axis=0) for eps in fixed]        # row-major
            varied = model.prior_noise(cols, tf.constant([seed, 2 + layer], tf.int32))[layer]
            noise[layer] = tf.tile(varied, [rows, 1])
        images = model.generate(noise).mean().numpy()
        blocks.append(image_grid(images, rows, cols))
    return blocks


def traversal_figure(model, **kwargs):
    """`layer_traversals` stacked top layer first, as the paper shows them."""
    return stack_blocks(layer_traversals(model, **kwargs)[::-1])
