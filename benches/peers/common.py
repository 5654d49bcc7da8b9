"""Helpers of the peer benchmarks: alternate rounds, summaries, one Markdown row."""

import json
import statistics
import subprocess
import time


def timed(command, env=None):
    """Run a command (list) and return its wall time in seconds; fail loudly."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]}… failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed, done.stdout


def alternate(sides, rounds):
    """Run each side's callable once per round, in turn; returns {name: [values]}."""
    results = {name: [] for name, _ in sides}
    for r in range(rounds):
        for name, run in sides:
            value = run()
            results[name].append(value)
            print(f"round {r + 1}: {name}: {value:.4g}", flush=True)
    return results


def summary(values):
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def report(benchmark, unit, results, higher_is_better, ours="cocolm", extra=None):
    """Print the summaries, the ratio by median (cocolm over each peer, oriented so that
    > 1 means cocolm is better), and one JSON line."""
    summaries = {name: summary(v) for name, v in results.items()}
    ratios = {}
    for name, s in summaries.items():
        if name == ours:
            continue
        a, b = summaries[ours]["median"], s["median"]
        ratios[name] = a / b if higher_is_better else b / a
    for name, s in summaries.items():
        print(f"{benchmark}: {name}: min {s['min']:.4g} median {s['median']:.4g} max {s['max']:.4g} {unit}")
    for name, r in ratios.items():
        print(f"{benchmark}: cocolm vs {name}: {r:.2f}x (by median)")
    line = {"benchmark": benchmark, "unit": unit, "summaries": summaries, "ratios": ratios}
    line.update(extra or {})
    print(json.dumps(line))
    return line
