"""Figure: toy-world scenes, untagged (top row of each pair) and tagged (bottom row).

Writes ``toy_scenes.png`` to ``--figures`` (default ``results/figure_toy_scenes/figures``
under the current folder; ``--figures figures`` from the repository root regenerates the
shipped figure): 8 scenes of the default world (112 px, patch 14, 2–5 objects) and 4 of
the 2–8 object range, each shown untagged and with its SoM tags at patch centres; a
faint patch grid shows that every tag glyph sits inside one patch.

Run:
    python experiments/figure_toy_scenes.py [--figures figures]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import _common as common
import matplotlib.pyplot as plt

from somprobe.data.toyworld import make_scene, tag_scene, world
from somprobe.measure import save_figure

JOB = "figure_toy_scenes"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_output_args(parser, JOB)
    return common.resolve_outputs(parser.parse_args(argv), JOB)


def main(argv: Sequence[str] | None = None) -> int:
    return common.run_job(run, parse_args(argv), JOB)


def run(args: argparse.Namespace) -> int:
    common.check_folder(args.figures, "--figures")
    worlds = [("v2", world("v2"), range(8)), ("v1", world("v1"), range(100, 104))]
    scenes = [(name, make_scene(cfg, (0, 2, i))) for name, cfg, ids in worlds for i in ids]
    cols = 6
    rows = 2 * ((len(scenes) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.0, rows * 2.3))
    for k, (name, scene) in enumerate(scenes):
        r, c = 2 * (k // cols), k % cols
        tagged = tag_scene(scene)
        size, patch = scene.config.image_size, scene.config.patch_size
        parts = [f"{t.label}:{t.category}" for t in tagged.tagset]
        names = "\n".join(", ".join(parts[i : i + 3]) for i in range(0, len(parts), 3))
        for dr, image, title in ((0, scene.image, f"world {name}: {len(scene.objects)} objects"),
                                 (1, tagged.image, None)):  # fmt: skip
            ax = axes[r + dr, c]
            ax.imshow(image, interpolation="nearest")
            if dr == 1:
                for g in range(patch, size, patch):
                    ax.axhline(g - 0.5, color="white", lw=0.3, alpha=0.35)
                    ax.axvline(g - 0.5, color="white", lw=0.3, alpha=0.35)
                ax.set_xlabel(names, fontsize=4.5, wrap=True)
            if title:
                ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        "Toy world v2 (the matched arms' world; first 8) and v1 (the shipped models' "
        "world; last 4): untagged (odd rows) and SoM-tagged with the 14 px patch grid (even rows)",
        fontsize=8,
    )
    fig.tight_layout()
    out = save_figure(fig, args.figures / "toy_scenes.png", dpi=160)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
