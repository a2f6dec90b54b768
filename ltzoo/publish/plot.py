"""The card's picture: per-class top-1 accuracy against the number of training images, log x axis."""

from __future__ import annotations

from collections.abc import Sequence

from ltzoo.plotting import GROUP_COLOURS, plt, png_bytes

SPLIT_MARKERS = {"val": "o", "test": "s"}


def per_class_accuracy_png(
    class_counts: Sequence[int],
    per_class: dict[str, Sequence[float | None]],
    groups: Sequence[str],
    label_names: Sequence[str] | None = None,
    title: str = "",
) -> bytes:
    """PNG bytes. ``per_class`` maps a split name to per-class top-1 (%); ``groups`` is many/medium/few per class.

    Point colour is the shot group and marker the split, so the tail (left) can be compared with the head
    (right) at a glance; classes with no evaluation images (None) are left out.
    """
    fig, ax = plt.subplots(figsize=(8.0, 4.2), dpi=110)
    for split, accuracies in per_class.items():
        xs, ys, colours = [], [], []
        for count, acc, group in zip(class_counts, accuracies, groups):
            if acc is None or count <= 0:  # log axis: a class without training images cannot be placed
                continue
            xs.append(count)
            ys.append(acc)
            colours.append(GROUP_COLOURS.get(group, "grey"))
        ax.scatter(
            xs,
            ys,
            c=colours,
            marker=SPLIT_MARKERS.get(split, "^"),
            s=36,
            alpha=0.85,
            edgecolors="black",
            linewidths=0.4,
            label=split,
        )
    if label_names and len(label_names) <= 20:  # names only where they stay readable
        first = next(iter(per_class.values()), [])
        for index, (count, acc, name) in enumerate(zip(class_counts, first, label_names)):
            if acc is not None and count > 0:
                # Alternate above/below so neighbouring classes on the log axis do not overwrite each other.
                ax.annotate(
                    name,
                    (count, acc),
                    textcoords="offset points",
                    xytext=(0, 7 if index % 2 == 0 else -12),
                    ha="center",
                    fontsize=7,
                )
    ax.set_xscale("log")
    ax.set_ylim(-5, 105)
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("top-1 accuracy of the class (%)")
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    # Legends outside the axes: the interesting points (tail classes at low accuracy) sit bottom-left.
    split_legend = ax.legend(title="split", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8)
    ax.add_artist(split_legend)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=c, label=g) for g, c in GROUP_COLOURS.items()]
    ax.legend(
        handles=handles, title="shot group", loc="upper left", bbox_to_anchor=(1.01, 0.6), fontsize=8, title_fontsize=8
    )
    return png_bytes(fig)
