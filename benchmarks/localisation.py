"""Heart localisation without labels: how much of the heart each region holds.

For each validation patient (number a multiple of 5): the region from the motion
between its ED and ES images, and the region from the two few-slice ED slices' truth
(what a user paints). Reported per region and phase: the share of the expert heart mask
(all foreground classes) inside the box, the box's share of the field of view, and the
distance (mm) from the box centre to the heart's in-plane centroid. Truth is read only
to score (and, for the painted region, as the paint).

    python benchmarks/localisation.py --data ../shared/data/acdc
"""

from __future__ import annotations

import numpy as np
from common import load_cases, load_split, parser, table, tagged, write_results

from napari_pix2rep.evaluation.protocols import few_slice_given
from napari_pix2rep.segment.localise import region_from_annotation, region_from_motion


def main() -> None:
    args = parser(__doc__.split("\n")[0]).parse_args()
    _, val = load_split(args.data, args.quick)
    rows = []
    for c in load_cases(val):
        spacing = tuple(c.ed.spacing[-2:])
        given = few_slice_given(c.ed_gt.data)
        paint = np.zeros_like(c.ed_gt.data)
        paint[given] = c.ed_gt.data[given]
        regions = {
            "motion": region_from_motion([c.ed.data, c.es.data], spacing),
            "painted": region_from_annotation(paint, spacing),
        }
        for source, region in regions.items():
            for phase, gt in (("ED", c.ed_gt.data), ("ES", c.es_gt.data)):
                heart = gt > 0
                centre = np.argwhere(heart)[:, -2:].mean(0)
                rows.append(
                    {
                        "case": c.case.id,
                        "region": source,
                        "phase": phase,
                        "inside": float((heart & region.mask(heart.shape)).sum() / heart.sum()),
                        "area": region.area_fraction(heart.shape),
                        "distance_mm": float(
                            np.hypot(*((np.array(region.centre) - centre) * spacing))
                        ),
                    }
                )
    lines = []
    for source in ("motion", "painted"):
        mine = [r for r in rows if r["region"] == source]
        inside = [r["inside"] for r in mine]
        lines.append(
            [
                source,
                f"{np.mean(inside):.4f}",
                f"{min(inside):.4f}",
                f"{np.mean([r['area'] for r in mine]):.2f}",
                f"{max(r['distance_mm'] for r in mine):.1f}",
            ]
        )
    md = (
        f"Heart localisation on {len(val)} validation patients (ED and ES truth).\n\n"
        + table(
            ["region", "heart inside (mean)", "worst", "share of view", "max centre offset mm"],
            lines,
        )
        + "\n"
    )
    write_results(args.out, tagged("localisation", args.tag), {"rows": rows}, md)


if __name__ == "__main__":
    main()
