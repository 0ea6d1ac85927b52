"""Model cards: `metrics.json` (machine-readable) rendered into `README.md`.

A card states what trained the model (data file, split, preprocessing,
recipe, seed, epochs, wall time, the versions of tensorflow, keras and
tensorflow-probability, whether op determinism was on), what it measures
(train / test ELBO, L_K, KL and active units per layer) and the exact
commands that produced every number. Cards are rendered from data, never
edited by hand; `tfladder.zoo.artifacts` writes them into a variant folder.
A low module: pure rendering, no file access, nothing of tfladder imported.
"""
# Figures a card shows when the folder has them, with their captions.
OPTIONAL_FIGURES = {
    "learning_curve.png": "ELBO per epoch (test: one fixed draw of the test split; train: "
                          "epoch mean, warm-up included); made by "
                          "`python benchmarks/learning_curves.py --write_to_artifacts`",
}


def _versions(versions):
    """`{"tensorflow_probability": "0.25.0", ...}` as pip names: "tensorflow-probability 0.25.0"."""
    if not versions:
        return "not recorded"
    return ", ".join(f"{name.replace('_', '-')} {version}" for name, version in versions.items())


def _determinism(deterministic):
    if deterministic is None:
        return "not recorded"
    if deterministic:
        return ("on (`--deterministic`: `tf.config.experimental.enable_op_determinism()`); "
                "the same command and seed give bit-identical weights on the same machine "
                "and versions")
    return ("off (no `--deterministic`); reruns with the same seed may differ in the last "
            "bits")


def _local_copy(name, digest):
    """`" (local copy `mnist.npz`, sha256 ...)"` when the data came from a file."""
    if not name:
        return ""
    return f" (local copy `{name}`" + (f", sha256 `{digest}`)" if digest else ")")


def _fmt(value, digits=2):
    return "n/a" if value is None else f"{value:.{digits}f}"


def card_markdown(config, metrics, figures=(), description=None):
    name = config.get("variant") or folder_name(config)
    data, recipe = config.get("data") or {}, config.get("recipe") or {}
    model = config["model_config"]
    lines = [f"# `{name}` — {config['family']}", ""]
    description = description or config.get("description")
    if description:
        lines += [description, ""]
    if metrics.get("note"):
        lines += [f"> {metrics['note']}", ""]
    lines += [
        "## Training",
        "",
        f"- Data: `{data.get('source')}`{_local_copy(data.get('file'), data.get('sha256'))}, "
        f"split `{data.get('train_split')}` for training, "
        f"`{data.get('test_split')}` for evaluation; binarization: "
        f"`{data.get('binarize')}` (pixels scaled to [0, 1]).",
        f"- Recipe: {recipe.get('epochs')} epochs, batch {recipe.get('batch_size')}, Adam "
        f"{recipe.get('learning_rate')}, KL warm-up over {recipe.get('warmup_epochs')} epochs, "
        f"seed {recipe.get('seed')}"
        + (f"; then {recipe['likelihood_epochs']} epochs of the likelihood head with the "
           "generator frozen (two-phase training)" if recipe.get("likelihood_epochs") else "")
        + ".",
        f"- Wall time: {metrics.get('train_seconds_total')} s of training"
        + (f" on {metrics['machine']}" if metrics.get("machine") else "")
        + " (summed over resumed sessions).",
        f"- Latent layers (bottom → top): {model['latent_dims']}; observation: "
        f"`{model['observation']}`.",
        f"- Versions: {_versions(config.get('versions'))}.",
        f"- Op determinism: {_determinism(metrics.get('deterministic'))}.",
        f"- Command: `{metrics.get('train_command', 'tfladder train ' + name)}`",
        "",
        "## Results (nats per image)",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| final train ELBO (epoch mean, dynamic draws) | {_fmt(metrics.get('final_train_elbo'))} |",
        f"| final test ELBO (end of training) | {_fmt(metrics.get('final_test_elbo'))} |",
    ]
    for split, result in sorted(metrics.get("evaluations", {}).items()):
        k = result.get("num_samples")
        lines.append(f"| {split} ELBO, {result['num_images']} images | {_fmt(result['elbo'])} |")
        if k:
            lines.append(f"| {split} L_{k}, {result['num_images']} images "
                         f"(± standard error over images) | "
                         f"{_fmt(result['log_likelihood'])} ± "
                         f"{_fmt(result['log_likelihood_stderr'])} |")
    for split, result in sorted(metrics.get("evaluations", {}).items()):
        lines += ["", f"Evaluation on `{result.get('data')}`"
                  f"{_local_copy(result.get('data_file'), result.get('data_sha256'))} "
                  f"split `{split}`, "
                  f"{result['num_images']} images, {result.get('preprocessing', '')}"
                  + (f", computed under `{result['precision']}`"
                     if result.get("precision", "float32") != "float32" else "")
                  + f": `{result['command']}`"]
    for split, result in sorted(metrics.get("evaluations", {}).items()):
        lines += ["", f"### KL and active units per layer ({split})", "",
                  "| layer | dim | KL (nats) | active units |", "| --- | --- | --- | --- |"]
        for l, (kl, au, dim) in enumerate(zip(result["kl_per_layer"], result["active_units"],
                                              result["latent_dims"])):
            lines.append(f"| {l + 1} | {dim} | {kl:.2f} | {au} |")
    lines += ["", "## Figures", "", "Samples (likelihood means):", "", "![samples](samples.png)",
              "", "Layer traversals, top layer first (one block per layer; only that layer's "
              "noise changes):", "", "![traversal](traversal.png)", ""]
    for figure in figures:
        lines += [f"{OPTIONAL_FIGURES[figure]}:", "", f"![{figure[:-4]}]({figure})", ""]
    lines += ["## Licence", "", config.get("license") or "", ""]
    return "\n".join(lines)


def folder_name(config):
    return config.get("family", "model")
