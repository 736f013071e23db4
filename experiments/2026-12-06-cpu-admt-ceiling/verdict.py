"""Diagnostic (not part of the toolkit): issue 35's goals, seed by seed, from a grid's
evaluations. For each seed that has AD-MT, Mean Teacher, labeled-only and all labeled: AD-MT
minus Mean Teacher (student against student, teacher against teacher) with the cases AD-MT wins,
each method's share of the gap to all labeled, and how far each goal is from being met (AD-MT at
least Mean Teacher + 2 Dice; at least 80 % of the gap). With ``--length_control``, a second grid
of the same label count whose labeled-only, all-labeled and Mean Teacher runs trained as long as
AD-MT did: the same numbers against those, so that a gain that is only the longer schedule shows.

    python verdict.py <grid> [--length_control <grid>]

Reads ``<grid>/eval/<METHOD>_<labeled>_s<seed>[_teacher]/`` as ``reproduce.py`` wrote them.
"""
import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from grid.results import case_dice, mean_std, read_summary, seed_metrics  # noqa: E402

GAIN_GOAL, SHARE_GOAL = 2.0, 80.0
EVALUATION = re.compile(r"(?P<method>[A-Z]+)_(?P<labeled>\d+)_s(?P<seed>\d+)(?P<teacher>_teacher)?$")


def evaluations(grid: Path) -> dict:
    """{(method, seed, model): (Dice in points, {case: Dice})} of every evaluation in the grid."""
    found = {}
    for folder in sorted((grid / "eval").iterdir()):
        match = EVALUATION.match(folder.name)
        if match and (folder / "summary.json").is_file():
            dice = 100 * seed_metrics(read_summary(folder / "summary.json"))["metrics"]["dice"]
            model = "teacher" if match["teacher"] else "student"
            found[match["method"], int(match["seed"]), model] = (dice, case_dice(folder))
    return found


def share(method: float, labeled_only: float, all_labeled: float) -> str:
    gap = all_labeled - labeled_only
    return f"{100 * (method - labeled_only) / gap:.0f} %" if gap > 0 else "n/a (no gap)"


def wins(a: dict, b: dict) -> str:
    return f"better on {sum(a[c] > b[c] for c in a)} of {len(a)} cases" if a and a.keys() == b.keys() else "cases not paired"


def report(runs: dict, control: dict, label: str) -> list[str]:
    lines = [label]
    gains, shares = {"student": [], "teacher": []}, {"student": [], "teacher": []}
    seeds = sorted({seed for method, seed, _ in runs if method == "ADMT"})
    for seed in seeds:
        need = [("MT", seed, "student"), ("SUP", seed, "student"), ("FULL", seed, "student")]
        missing = [name for name, *_ in need if (name, seed, "student") not in runs]
        if missing:
            lines.append(f"seed {seed}: AD-MT {runs['ADMT', seed, 'student'][0]:.2f}; no {', '.join(missing)} yet")
            continue
        sup, full = runs["SUP", seed, "student"][0], runs["FULL", seed, "student"][0]
        lines.append(f"seed {seed}: labeled-only {sup:.2f}, all labeled {full:.2f} (gap {full - sup:+.2f})")
        for model in ("student", "teacher"):
            admt, mt = runs.get(("ADMT", seed, model)), runs.get(("MT", seed, model))
            if not admt or not mt:
                continue
            gain = admt[0] - mt[0]
            admt_share = 100 * (admt[0] - sup) / (full - sup) if full > sup else float("nan")
            gains[model].append(gain)
            shares[model].append(admt_share)
            lines.append(f"  {model}: AD-MT {admt[0]:.2f}, Mean Teacher {mt[0]:.2f}; AD-MT - MT {gain:+.2f} "
                         f"({wins(admt[1], mt[1])}; goal +{GAIN_GOAL:g}: "
                         + ("met" if gain >= GAIN_GOAL else f"missed by {GAIN_GOAL - gain:.2f}") + "); "
                         f"share of the gap AD-MT {share(admt[0], sup, full)}, Mean Teacher {share(mt[0], sup, full)} "
                         f"(goal {SHARE_GOAL:g} %: "
                         + ("met" if admt_share >= SHARE_GOAL else
                            "n/a" if admt_share != admt_share else f"missed by {SHARE_GOAL - admt_share:.0f} points") + ")")
            long = {name: control.get((name, seed, model)) or control.get((name, seed, "student"))
                    for name in ("SUP", "FULL", "MT")}
            if all(long.values()):
                lines.append(f"    at AD-MT's length: labeled-only {long['SUP'][0]:.2f}, all labeled {long['FULL'][0]:.2f}, "
                             f"Mean Teacher {long['MT'][0]:.2f}; AD-MT - MT {admt[0] - long['MT'][0]:+.2f} "
                             f"({wins(admt[1], long['MT'][1])}); share of the gap AD-MT "
                             f"{share(admt[0], long['SUP'][0], long['FULL'][0])}, Mean Teacher "
                             f"{share(long['MT'][0], long['SUP'][0], long['FULL'][0])}")
    for model in ("student", "teacher"):
        if len(gains[model]) > 1:
            gain, gain_std = mean_std(gains[model])
            mean_share, share_std = mean_std(shares[model])
            lines.append(f"mean over {len(gains[model])} seeds, {model}: AD-MT - MT {gain:+.2f} ± {gain_std:.2f}, "
                         f"share of the gap {mean_share:.0f} ± {share_std:.0f} %")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid", type=Path)
    parser.add_argument("--length_control", type=Path, help="a grid trained as long as AD-MT")
    args = parser.parse_args()
    control = evaluations(args.length_control) if args.length_control else {}
    print("\n".join(report(evaluations(args.grid), control, f"{args.grid.name}, Dice points, last checkpoint"
                           + (f"; length control {args.length_control.name}" if control else ""))))


if __name__ == "__main__":
    main()
