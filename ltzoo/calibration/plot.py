"""The picture of a calibration: val top-1 (all/many/medium/few) against tau for each tuned method."""

from __future__ import annotations

from typing import Any

from ltzoo.plotting import GROUP_COLOURS, plt, png_bytes

CURVE_STYLES = {
    "all": ("black", "-"),
    "many": (GROUP_COLOURS["many"], "--"),
    "medium": (GROUP_COLOURS["medium"], "--"),
    "few": (GROUP_COLOURS["few"], "-"),
}


def calibration_curves_png(record: dict[str, Any], title: str = "") -> bytes:
    """PNG bytes: val top-1 (all/many/medium/few) against tau for each tuned calibration method of a calibrated run
    (``config.json``'s ``calibration`` block), the chosen tau marked, the plain head as a dotted line."""
    curves = record.get("val_curves") or {}
    panels = list(curves) or ["none"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), dpi=110, squeeze=False)
    plain = (record.get("candidates") or {}).get("none", {}).get("all")
    for ax, method in zip(axes[0], panels):
        points = curves.get(method, [])
        taus = [p["parameter"] for p in points]
        for group, (colour, style) in CURVE_STYLES.items():
            ax.plot(taus, [p[group] for p in points], style, color=colour, label=group, linewidth=1.4)
        if plain is not None:
            ax.axhline(plain, color="grey", linestyle=":", linewidth=1, label="plain (all)")
        if record.get("method") == method and record.get("parameter") is not None:
            ax.axvline(record["parameter"], color="green", linewidth=1, label=f"chosen tau={record['parameter']:g}")
        ax.set_xlabel("tau")
        ax.set_ylabel("val top-1 (%)")
        ax.set_title(method, fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return png_bytes(fig)
