"""
Each claim's figure as a function of the JEPA weight λ, from an analysis report's geometry.json (eval_geometry.py
puts every claim row there, probe scores included): each MLM arm (step- and FLOP-matched) at λ = 0, each hybrid
arm at the λ its log ends with, every seed a point. Writes by_lambda.md (the table) and by_lambda.png (one panel
per claim) beside the JSON, and puts both in REPORT.md there as its last section (replacing an earlier one).

$ python results/cpu-lambda/by_lambda.py [results/cpu-lambda]
"""
import json
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# the figure each panel shows (the claim's own pooling where the paper names one, mean pooling otherwise)
PANELS = [("1. more uniform", "stsb mean uniformity"), ("2. richer spectrum (max pooling)", "stsb max eff_rank"),
          ("3a. less lexical information", "mft acc mean"), ("3b. semantic-to-lexical balance", "rho_sem-rho_lex mean"),
          ("4. probe scores", "sst2 acc mean")]


SECTION = "## Each claim as a function of λ"


def final_lambda(report):
    """{run label: λ at its last logged step} for the hybrid runs (the MLM is λ = 0)."""
    return {label: c["lambda"]["value"][-1] for label, c in report["training"].items() if "lambda" in c}


def points(report):
    """{figure: {arm group: [(λ, value, seed)]}} from the claim rows: every MLM group (step- and FLOP-matched) at
    λ = 0, each hybrid group at its own λ (the rows list every seed of both groups)."""
    lam = final_lambda(report)
    out = defaultdict(dict)
    for row in report["claims"]:
        fig = row["figure"]
        out[fig][row["mlm"]] = [(0.0, v, s) for s, v in row["mlm_seeds"].items()]
        out[fig][row["hybrid"]] = [(lam[f"{row['hybrid']}-s{s}"], v, s) for s, v in row["hybrid_seeds"].items()]
    return out


def table(report, pts):
    """The figure-vs-λ table: one line per claim figure, one column per arm (λ, mean over seeds, seeds)."""
    rows = report["claims"]
    first = pts[rows[0]["figure"]]
    arms = sorted(dict.fromkeys(first), key=lambda arm: sum(x for x, _, _ in first[arm]) / len(first[arm]))  # by λ
    lines = ["| claim | figure | " + " | ".join(arms) + " |", "|---|---|" + "---|" * len(arms)]
    seen = set()
    for r in rows:
        if r["figure"] in seen:
            continue
        seen.add(r["figure"])
        cells = []
        for arm in arms:
            p = pts[r["figure"]].get(arm, [])
            if p:
                mean = sum(v for _, v, _ in p) / len(p)
                cells.append(f"{mean:.3f} (λ {sum(x for x, _, _ in p) / len(p):.2f}, n={len(p)})")
            else:
                cells.append("–")
        lines.append(f"| {r['claim']} | {r['figure']} | " + " | ".join(cells) + " |")
    return lines


def plot(pts, path):
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.6))
    for ax, (title, figure) in zip(axes, PANELS):
        for i, (arm, p) in enumerate(pts.get(figure, {}).items()):
            ax.scatter([x for x, _, _ in p], [v for _, v, _ in p], label=arm, s=28, marker="osD^v<>"[i % 7])
        ax.set_title(f"{title}\n{figure}", fontsize=9)
        ax.set_xlabel("λ (JEPA weight) at the end")
        ax.set_xlim(-0.05, 1.0)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(folder):
    path = os.path.join(folder, "geometry.json")
    if not os.path.exists(path):
        sys.exit(f"error: no {path}: run eval_geometry.py with --report_dir={folder} first")
    report = json.load(open(path, encoding="utf-8"))
    pts = points(report)
    lines = ["Each claim figure per arm: the mean over seeds, the arm's λ at the end and its seeds (n); "
             f"`python results/cpu-lambda/by_lambda.py {folder}` from its geometry.json.", ""] + table(report, pts)
    open(os.path.join(folder, "by_lambda.md"), "w", encoding="utf-8").write("\n".join(lines) + "\n")
    plot(pts, os.path.join(folder, "by_lambda.png"))
    report_md = os.path.join(folder, "REPORT.md")
    if os.path.exists(report_md):
        text = open(report_md, encoding="utf-8").read().split(SECTION)[0].rstrip("\n")
        open(report_md, "w", encoding="utf-8").write(
            f"{text}\n\n{SECTION}\n\n![each claim against λ](by_lambda.png)\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
