"""Test ELBO against epoch for the shipped MNIST variants (LVAE paper Fig. 3 style).

python benchmarks/learning_curves.py [--variants lvae_mnist,hvae_mnist,...] [--at_epoch 100]

Reads the per-epoch history stored in each shipped artifact's metrics.json
(`val_elbo` is the test split, one fixed binarization, scored after every
epoch; `elbo` the running mean over the epoch's dynamically binarized training
batches) and writes benchmarks/results/learning_curves.{md,png}. The table
also compares every variant at the same epoch (`--at_epoch`), the equal-budget
comparison when variants were trained for different numbers of epochs.
Needs matplotlib (`pip install -e ".[benchmarks]"`).
"""
import json
import pathlib
import sys

from absl import app, flags

from tfladder import zoo
from tfladder.zoo import artifacts

FLAGS = flags.FLAGS
flags.DEFINE_list("variants", ["vae_mnist", "hvae_mnist", "lvae_mnist", "topdown_mnist",
                               "vlae_mnist"], "Shipped zoo variants to plot (others skipped).")
flags.DEFINE_integer("at_epoch", 100, "Epoch for the equal-budget column.")
flags.DEFINE_string("out", "benchmarks/results/learning_curves", "Output path stem.")
flags.DEFINE_bool("write_to_artifacts", False,
                  "Also save each variant's own curve as learning_curve.png in its zoo "
                  "folder, re-render its card and refresh its SHA256SUMS.")


def load_history(name):
    """`(history dict of per-epoch lists, metrics dict)` of a shipped variant, or None."""
    try:
        folder = zoo.artifact_dir(name)
    except FileNotFoundError:
        return None
    if not (folder / "metrics.json").exists():
        return None
    metrics = json.loads((folder / "metrics.json").read_text())
    return metrics.get("history", {}), metrics


def plot(curves, path, title):
    """One line per (label, epochs, values); saved as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, values, style in curves:
        ax.plot(range(1, len(values) + 1), values, style, label=label, linewidth=1.2)
    finals = [v[-1] for _, v, _ in curves]
    ax.set_ylim(min(finals) - 6.0, max(finals) + 10.0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv):
    out = pathlib.Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows, curves, missing = [], [], []
    for name in FLAGS.variants:
        loaded = load_history(name)
        if loaded is None or "val_elbo" not in loaded[0]:
            missing.append(name)
            continue
        history, metrics = loaded
        test, train = history["val_elbo"], history.get("elbo", [])
        at = FLAGS.at_epoch
        rows.append(f"| {name} | {len(test)} | {train[-1]:.2f} | {test[-1]:.2f} | "
                    f"{max(test):.2f} (epoch {test.index(max(test)) + 1}) | "
                    + (f"{test[at - 1]:.2f}" if len(test) >= at else "—") + " |")
        curves.append((f"{name} test", test, "-"))
        if name == "lvae_mnist" and train:
            curves.append((f"{name} train", train, ":"))
        if FLAGS.write_to_artifacts:
            artifacts.update_folder(
                zoo.artifact_dir(name),
                lambda staged, n=name, te=test, tr=train: plot(
                    [(f"{n} test", te, "-"), (f"{n} train", tr, ":")],
                    staged / "learning_curve.png", f"{n}: ELBO per epoch"),
                description=zoo.get(name).description, files=["learning_curve.png"])
    if not curves:
        raise SystemExit(f"None of {FLAGS.variants} is shipped with a history.")
    plot(curves, out.with_suffix(".png"), "Test ELBO per epoch (dynamically binarized MNIST)")
    command = "python benchmarks/learning_curves.py " + " ".join(sys.argv[1:])
    lines = [
        "# Learning curves of the shipped MNIST variants", "",
        f"Command: `{command.strip()}`", "",
        "Per-epoch ELBO from each artifact's `metrics.json` history: test = the MNIST "
        "test split under one fixed binarization, train = mean over the epoch's "
        "dynamically binarized batches (it includes the KL warm-up, so it is not a "
        "bound until beta = 1).", "",
        f"| variant | epochs | final train ELBO | final test ELBO | best test ELBO | "
        f"test ELBO at epoch {FLAGS.at_epoch} |",
        "| --- | --- | --- | --- | --- | --- |", *rows, "",
        f"![learning curves]({out.with_suffix('.png').name})",
    ]
    if missing:
        lines += ["", f"Not shipped (skipped): {', '.join(missing)}."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
