"""Do the lessons hold on every machine? Run notebooks 03-05 under each seed, oneDNN setting and
thread count, collect every lesson's effects and verdict, and write docs/lessons.md (+ .json).

Each run executes the notebooks themselves (papermill, default parameters except SEED and
OUTPUT_DIR), so the table measures exactly what a learner runs. `Lesson.verdict` appends each
lesson's effects to the file named by the `LESSONS_LOG` environment variable. The thread count is
set by CPU affinity (`taskset`-like, `os.sched_setaffinity` of the kernel's parent), which
TensorFlow follows; oneDNN by `TF_ENABLE_ONEDNN_OPTS`, read when TensorFlow starts.

    python benchmarks/lessons.py run --seed 0 --onednn 1 --threads 2   # one run -> results/lessons/
    python benchmarks/lessons.py report                                # all runs -> docs/lessons.md
    python benchmarks/lessons.py all --seeds 0 1 2 3 4                 # every combination, then report
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "lessons"
NOTEBOOKS = ("03_training", "04_gradcam_interpretation", "05_shortcut_learning")
DOC = ROOT / "docs" / "lessons.md"


def run_name(seed: int, onednn: int, threads: int) -> str:
    return f"seed{seed}-onednn{onednn}-threads{threads}"


def _moved(value, out: str):
    """`value` with every path under the notebooks' "../outputs" moved under `out` (nested too), so
    parallel runs never share data, runs or caches with each other or with the repository."""
    if isinstance(value, dict):
        return {k: _moved(v, out) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("../outputs"):
        return out + value[len("../outputs"):]
    return value


def run(seed: int, onednn: int, threads: int, first_cpu: int = 0, notebooks: tuple[str, ...] = NOTEBOOKS) -> Path:
    """Execute notebooks 03-05 once in a fresh output folder; write results/lessons/<run>.json.

    With fewer `notebooks` (e.g. after a change that only touches 03 and 04), the lessons of the
    others are kept from the run's existing record, so the table stays one record per run."""
    unknown = set(notebooks) - set(NOTEBOOKS)
    if unknown:
        raise SystemExit(f"unknown notebook(s) {sorted(unknown)}: choose from {list(NOTEBOOKS)}")
    import papermill as pm

    from cxrnb.notebook import parameters

    RESULTS.mkdir(parents=True, exist_ok=True)
    out_file = RESULTS / f"{run_name(seed, onednn, threads)}.json"
    os.environ.update(TF_ENABLE_ONEDNN_OPTS=str(onednn), TF_CPP_MIN_LOG_LEVEL="3")
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus[first_cpu:first_cpu + threads])  # the kernel inherits it
    with tempfile.TemporaryDirectory(prefix="lessons-") as tmp:
        log = Path(tmp) / "lessons.jsonl"
        os.environ["LESSONS_LOG"] = str(log)
        seconds, lessons = {}, []
        if set(notebooks) != set(NOTEBOOKS):
            if not out_file.is_file():
                raise SystemExit(f"{out_file} does not exist: run every notebook first")
            kept = json.loads(out_file.read_text())
            if any("notebook" not in les for les in kept["lessons"]):
                raise SystemExit(f"{out_file} does not say which notebook each lesson came from: run every notebook")
            seconds = kept["seconds"]
            lessons = [les for les in kept["lessons"] if les.get("notebook") not in notebooks]
        for name in (nb for nb in NOTEBOOKS if nb in notebooks):
            t0 = time.perf_counter()
            params = _moved(parameters(ROOT / "notebooks" / f"{name}.ipynb"), str(Path(tmp) / "outputs"))
            pm.execute_notebook(ROOT / "notebooks" / f"{name}.ipynb", Path(tmp) / f"{name}.ipynb",
                                parameters={**params, "SEED": seed},
                                cwd=ROOT / "notebooks", kernel_name="python3", progress_bar=False,
                                execution_timeout=1800)
            seconds[name] = round(time.perf_counter() - t0, 1)
            lessons += [{**json.loads(line), "notebook": name} for line in log.read_text().splitlines()]
            log.unlink(missing_ok=True)
        lessons.sort(key=lambda les: NOTEBOOKS.index(les["notebook"]))
    record = {"seed": seed, "onednn": onednn, "threads": threads, "seconds": seconds, "lessons": lessons,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tmp_file = out_file.with_suffix(".tmp")
    tmp_file.write_text(json.dumps(record, indent=1))
    tmp_file.replace(out_file)
    return out_file


def _least_slack(slacks: list[float]) -> str:
    """The least of an effect's slacks over the runs: "nan" if a run could not be judged, "-" if
    the effect is shown, not judged (Python's `min` is order-dependent with NaN)."""
    if any(x != x for x in slacks):
        return "nan"
    least = min(slacks)
    return "-" if least == float("inf") else f"{least:+.3f}"


def report() -> str:
    """docs/lessons.md and docs/lessons.json from every run in results/lessons/."""
    from cxrnb.lessons import judge, slack

    runs = sorted((json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))), key=lambda r: r.get("finished", ""))
    if not runs:
        raise SystemExit(f"no runs in {RESULTS}: run `python benchmarks/lessons.py run ...` first")
    # Each effect is judged again with the rule of the newest run that logged it, from the logged
    # estimate and interval: runs made before a rule changed are read with the rule in force.
    rules = {e["name"]: e["rule"] for r in runs for les in r["lessons"] for e in les["effects"]}
    claims: dict[str, dict] = {}
    for r in runs:
        for les in r["lessons"]:
            c = claims.setdefault(les["claim"], {"held": [], "effects": {}})
            met = []
            for e in les["effects"]:
                rule, low = rules[e["name"]], float("nan") if e["low"] is None else e["low"]
                d = c["effects"].setdefault(e["name"], {"rule": rule, "values": [], "met": [], "slack": []})
                d["values"].append(e["estimate"])
                d["met"].append(judge(rule, e["estimate"], low))
                d["slack"].append(slack(rule, e["estimate"], low))
                met.append(d["met"][-1])
            c["held"].append(bool(met) and all(met))
    combos = sorted({(r["seed"], r["onednn"], r["threads"]) for r in runs})
    lines = ["# Do the lessons hold on every machine?", "",
             "Generated by `python benchmarks/lessons.py all` (and `report`): notebooks 03-05 executed with",
             "their default parameters, once per combination of seed (data, split, weights), oneDNN",
             "(`TF_ENABLE_ONEDNN_OPTS`) and thread count (CPU affinity). Each effect is judged from its",
             "estimate and its 95 % interval (`cxrnb.lessons.effect`; runs logged before a rule changed",
             "are judged again with the rule in force). A lesson's verdict line is compared strictly by the",
             "notebook tests only if it came out the same in **every** run below; otherwise it is printed",
             "and not compared. A run's record keeps each notebook's lessons from its latest execution",
             "(`run --notebooks` executes only the notebooks a change touched).", "",
             f"Runs ({len(runs)}): " + ", ".join(f"seed {s} / oneDNN {'on' if o else 'off'} / {t} thread{'s' * (t > 1)}"
                                               for s, o, t in combos), "",
             "`least slack` is how far inside its rule the effect stayed in the run closest to the bar",
             "(`cxrnb.lessons.slack`: estimate minus bar, or the interval's low end minus its bar;",
             "negative when missed): a verdict with little slack can flip on a CPU not in this table.", "",
             "| lesson (verdict line) | held | effect | rule | min | median | max | met | least slack |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for claim, c in claims.items():
        first = True
        for name, e in c["effects"].items():
            v = e["values"]
            lead = f"| {claim} | {sum(c['held'])}/{len(c['held'])} " if first else "| | "
            lines.append(lead + f"| {name} | {(e['rule'] or 'shown, not judged').replace('|', chr(92) + '|')} | {min(v):.2f} | {statistics.median(v):.2f} | "
                         f"{max(v):.2f} | {sum(e['met'])}/{len(e['met'])} | {_least_slack(e['slack'])} |")
            first = False
    secs = {nb: [r["seconds"][nb] for r in runs] for nb in NOTEBOOKS}
    lines += ["", "Notebook run times in these runs (seconds; machine shared with other work, 1-thread runs included):", "",
              "| notebook | min | median | max |", "| --- | --- | --- | --- |"]
    lines += [f"| {nb} | {min(s):.0f} | {statistics.median(s):.0f} | {max(s):.0f} |" for nb, s in secs.items()]
    text = "\n".join(lines) + "\n"
    DOC.write_text(text)
    DOC.with_suffix(".json").write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    one = sub.add_parser("run", help="one run")
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--onednn", type=int, choices=(0, 1), default=1)
    one.add_argument("--threads", type=int, default=2)
    one.add_argument("--first-cpu", type=int, default=0, help="CPU offset, to run 1-thread runs side by side")
    one.add_argument("--notebooks", nargs="+", default=list(NOTEBOOKS), choices=NOTEBOOKS,
                     help="run only these; the other notebooks' lessons are kept from the run's record")
    sub.add_parser("report", help="aggregate the runs into docs/lessons.md")
    every = sub.add_parser("all", help="every combination, each in its own process, then the report")
    every.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    every.add_argument("--threads", type=int, nargs="+", default=[2])
    a = ap.parse_args(argv)
    if a.cmd == "run":
        print(run(a.seed, a.onednn, a.threads, a.first_cpu, tuple(a.notebooks)))
    elif a.cmd == "all":
        for seed in a.seeds:
            for onednn in (1, 0):
                for threads in a.threads:
                    subprocess.run([sys.executable, __file__, "run", "--seed", str(seed), "--onednn", str(onednn),
                                    "--threads", str(threads)], check=True)
        print(report())
    else:
        print(report())


if __name__ == "__main__":
    main()
