"""Diagnostic (not part of the toolkit): issue 35's goals, seed by seed, from a grid's
evaluations, with the arithmetic of ``reproduce.py``'s report (``grid.results``): AD-MT minus Mean
Teacher (student against student, teacher against teacher) with the cases AD-MT wins, each
method's share of the gap to all labeled, and how far each goal is from being met (AD-MT at least
Mean Teacher + 2 Dice; at least 80 % of the gap). With ``--length_control``, a second grid of the
same label count whose labeled-only, all-labeled and Mean Teacher runs trained as long as AD-MT
did: the same numbers with AD-MT's rows set beside those, so that a gain that is only the longer
schedule shows.

    python verdict.py <grid> [--length_control <grid>] [--admt <grid>]

``--admt``: AD-MT's rows from that grid instead (the per-class threshold runs, whose folder holds
only AD-MT), beside the other rows of ``<grid>``.

Reads ``<grid>/eval/<METHOD>_<labeled>_s<seed>[_teacher]/`` as ``reproduce.py`` wrote them.
"""
import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from grid.results import Run, collect, differences, gap_closed  # noqa: E402

GAIN_GOAL, SHARE_GOAL = 2.0, 80.0
STUDENT_EVALUATION = re.compile(r"(?P<method>[A-Z]+)_(?P<labeled>\d+)_s(?P<seed>\d+)$")


def grid_rows(grid: Path) -> list[dict]:
    """``grid.results.collect``'s rows for every run evaluated in the grid (its teacher too)."""
    runs = [Run(match["method"], int(match["labeled"]), int(match["seed"]), "", ("--max_iterations", "0"))
            for folder in sorted((grid / "eval").iterdir())
            if (match := STUDENT_EVALUATION.match(folder.name)) and (folder / "summary.json").is_file()]
    return collect(runs, grid, sorted({r.labelnum for r in runs if r.method != "FULL"}),
                   max(r.labelnum for r in runs))


def goal(value: float, target: float, unit: str) -> str:
    return "met" if value >= target else f"missed by {target - value:.2f}{unit}"


def report(rows: list[dict], title: str) -> list[str]:
    lines = [title]
    shares = {(c["method"], c["model"]): c for c in gap_closed(rows)}
    for d in (d for d in differences(rows, "MT") if d["method"] == "ADMT"):
        admt, mt = (next(r for r in rows if r["method"] == m and r["model"] == d["model"]) for m in ("ADMT", "MT"))
        seeds = [s for s in admt["seeds"] if s in mt["seeds"]]  # the order differences() pairs them in
        admt_share, mt_share = shares.get(("ADMT", d["model"]), {}), shares.get(("MT", d["model"]), {})
        for at, seed in enumerate(seeds):
            wins = f"better on {d['better_cases'][at][0]} of {d['better_cases'][at][1]} cases; " if d["better_cases"] else ""
            share = admt_share.get("per_seed", {}).get(seed)
            lines.append(f"seed {seed}, {d['model']}: AD-MT - Mean Teacher {d['dice_points'][at]:+.2f} ({wins}goal "
                         f"+{GAIN_GOAL:g}: {goal(d['dice_points'][at], GAIN_GOAL, ' points')}); share of the gap AD-MT "
                         + (f"{share:.0f} % (goal {SHARE_GOAL:g} %: {goal(share, SHARE_GOAL, ' points')})"
                            if share is not None else "n/a (no all-labeled run above labeled-only)")
                         + f", Mean Teacher {mt_share.get('per_seed', {}).get(seed, float('nan')):.0f} %")
        if len(seeds) > 1:
            lines.append(f"mean over {len(seeds)} seeds, {d['model']}: AD-MT - Mean Teacher {d['mean']:+.2f} ± "
                         f"{d['std']:.2f}; share of the gap AD-MT {admt_share.get('mean', float('nan')):.0f} ± "
                         f"{admt_share.get('std', float('nan')):.0f} %")
    for row in rows:
        lines.append(f"  {row['label']}, {row['labelnum']} labeled: "
                     + ", ".join(f"{seed} {100 * dice:.2f}" for seed, dice in zip(row["seeds"], row["per_seed"]["dice"])))
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid", type=Path)
    parser.add_argument("--length_control", type=Path, help="a grid trained as long as AD-MT")
    parser.add_argument("--admt", type=Path, help="a grid whose AD-MT rows replace <grid>'s")
    args = parser.parse_args()
    rows = grid_rows(args.grid)
    if args.admt:
        rows = [r for r in rows if r["method"] != "ADMT"] + [r for r in grid_rows(args.admt) if r["method"] == "ADMT"]
    lines = report(rows, f"{args.grid.name}" + (f" with AD-MT of {args.admt}" if args.admt else "")
                   + ", Dice points, last checkpoint")
    if args.length_control:
        control = grid_rows(args.length_control) + [r for r in rows if r["method"] == "ADMT"]
        lines += ["", *report(control, f"AD-MT of {args.grid.name} against {args.length_control.name}, trained as long")]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
