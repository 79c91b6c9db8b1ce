"""Latency beside MFLOPs: the trials that have a latency, and where the two orders disagree, per group count.

The paper's point is that MFLOPs are not latency (pointwise group convolutions cost memory traffic
that multiply-adds do not count), so the report shows, for each kind of latency (measured,
LUT-predicted, LUT-estimated, emulated estimate; never mixed), how much time each group count
takes at equal MFLOPs (one fit per kind) and how many pairs of trials the two measures order the other way.

>>> lat = pd.DataFrame({"groups": [1, 1, 8], "mflops": [20.0, 40.0, 40.0], "latency_ms": [6.0, 10.0, 13.0],
...                     "latency_kind": ["lut-estimated"] * 3})
>>> latency_groups_frame(lat).vs_fewest_groups.tolist()
[1.0, 1.3]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LATENCY_COLUMNS = ["study", "trial", "label", "groups", "mflops", "latency_ms", "latency_kind", "top1_pct"]
GROUP_COLUMNS = ["latency_kind", "groups", "trials", "median_mflops", "median_latency_ms", "common_mflops",
                 "ms_at_common_mflops", "vs_fewest_groups", "mflops_exponent"]  # fmt: skip


def latency_frame(done: pd.DataFrame) -> pd.DataFrame:
    """Complete trials that have a latency, with what says how it was obtained."""
    frame = done[done.latency_ms.notna() & done.mflops.notna()][LATENCY_COLUMNS]
    return frame.assign(latency_kind=frame.latency_kind.fillna("unknown")).reset_index(drop=True)


def latency_groups_frame(latency: pd.DataFrame) -> pd.DataFrame:
    """Per latency kind and group count: the time each group count takes at equal MFLOPs.

    One fit per kind, log latency = (a term per group count) + k log MFLOPs, with k shared by the
    groups: trials of different sizes then compare at the same cost (`common_mflops`, the kind's
    median), where a plain ratio of time to MFLOPs would charge small networks their fixed overhead.
    """
    rows = []
    usable = latency[(latency.mflops > 0) & (latency.latency_ms > 0)].dropna(subset=["groups"])
    for kind, of_kind in usable.groupby("latency_kind", sort=True):
        groups = sorted({int(g) for g in of_kind.groups})
        x, y = np.log(of_kind.mflops.to_numpy(float)), np.log(of_kind.latency_ms.to_numpy(float))
        columns = [(of_kind.groups.to_numpy() == g).astype(float) for g in groups]
        if np.ptp(x) > 0:
            coef = np.linalg.lstsq(np.column_stack([*columns, x]), y, rcond=None)[0]
            exponent = float(coef[len(groups)])
        else:  # one MFLOPs value: no exponent to fit; time in proportion to MFLOPs
            exponent = 1.0
            coef = np.linalg.lstsq(np.column_stack(columns), y - x, rcond=None)[0]
        common = float(of_kind.mflops.median())
        at_common = {g: float(np.exp(coef[i] + exponent * np.log(common))) for i, g in enumerate(groups)}
        for g in groups:
            grp = of_kind[of_kind.groups == g]
            rows.append({"latency_kind": kind, "groups": g, "trials": len(grp),
                         "median_mflops": round(float(grp.mflops.median()), 2),
                         "median_latency_ms": round(float(grp.latency_ms.median()), 3),
                         "common_mflops": round(common, 2), "ms_at_common_mflops": round(at_common[g], 3),
                         "vs_fewest_groups": round(at_common[g] / at_common[groups[0]], 3),
                         "mflops_exponent": round(exponent, 3)})  # fmt: skip
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)


def discordant_pairs(mflops: np.ndarray, latency: np.ndarray) -> tuple[int, int]:
    """(pairs that MFLOPs and latency order the other way, pairs that MFLOPs order at all)."""
    mflops, latency = np.asarray(mflops, float), np.asarray(latency, float)
    discordant = ordered = 0
    for i in range(len(mflops) - 1):  # a row at a time: memory stays linear for thousands of trials
        dm, dl = mflops[i + 1 :] - mflops[i], latency[i + 1 :] - latency[i]
        ordered += int(np.count_nonzero(dm))
        discordant += int(np.count_nonzero(dm * dl < 0))
    return discordant, ordered


def disagreement_lines(latency: pd.DataFrame, groups: pd.DataFrame) -> list[str]:
    """One sentence per latency kind: the group count furthest in time from the fewest groups at equal MFLOPs,
    and the pairs of trials ordered the other way."""
    lines = []
    for kind, of_kind in latency.groupby("latency_kind", sort=True):
        here = groups[groups.latency_kind == kind]
        line = f"Latency vs MFLOPs ({kind}, {len(of_kind)} trials)"
        if len(here) > 1:
            # the group count furthest from the fewest groups' time, faster or slower
            far = here.iloc[1:].iloc[np.argmax(np.abs(np.log(here.vs_fewest_groups.iloc[1:].to_numpy(float))))]
            line += (f": at equal MFLOPs ({far.common_mflops:g}), g{int(far.groups)} takes "
                     f"{far.vs_fewest_groups:.2f}x the time of g{int(here.groups.iloc[0])}")  # fmt: skip
        bad, pairs = discordant_pairs(of_kind.mflops.to_numpy(), of_kind.latency_ms.to_numpy())
        if pairs:
            line += (
                f"; {bad} of {pairs} pairs of trials ({100 * bad / pairs:.0f}%) are ordered the other way by latency"
            )
        lines.append(line + ".")
    return lines
