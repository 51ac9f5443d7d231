"""Tests of the runner's judgement of the benchmark targets (run.py,
targets_section) on made-up runs: each target is met, and each is missed."""
import importlib.util
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("run", HERE / "run.py")
run = importlib.util.module_from_spec(spec)
sys.modules["run"] = run
spec.loader.exec_module(run)

NAMES = ["glibc", "jemalloc", "tcmalloc", "mimalloc", "strata"]


def workload(name, group):
    return run.Workload(name=name, group=group, about="")


def records(times, rss, freed_mib):
    """times, rss: {workload: {allocator: value}}; freed_mib: {allocator: MiB}
    printed by the fragmentation workload. Two rounds alike."""
    out = []
    for rnd in (0, 1):
        for w, row in times.items():
            for n, t in row.items():
                stdout = "rss: all_free_mib=%s\n" % freed_mib[n] if w == "fragmentation" else ""
                m = run.Measurement(t, t, int(rss[w][n] * 1024), "ok", stdout, "")
                out.append(run.Record(w, n, rnd, m))
    return out


def judge(times, rss, freed_mib, fast):
    works = [workload(w, "programs" if w.startswith("prog") else "synthetic") for w in times]
    recs = records(times, rss, freed_mib)
    summary = run.summarize(recs, works, NAMES, "strata")
    memory = run.memory_table(recs, works, NAMES)
    return "\n".join(run.targets_section(summary, memory, fast, works, NAMES))


def row(strata, peers):
    return dict(peers, strata=strata)


FAST = {"mimalloc": {"fixed32": 52.0}, "strata": {"fixed32": 50.0}}
FREED = {"glibc": 500, "jemalloc": 490, "tcmalloc": 540, "mimalloc": 540, "strata": 90}


def good_run():
    peers = {"glibc": 2.0, "jemalloc": 2.0, "tcmalloc": 1.5, "mimalloc": 1.5}
    times = {"fragmentation": row(1.0, peers), "prog-a": row(1.0, peers),
             "synth": row(1.0, peers)}
    rss = {w: row(10.0, {n: 11.0 for n in peers}) for w in times}
    return times, rss


class Targets(unittest.TestCase):
    def test_a_run_that_meets_every_target(self):
        times, rss = good_run()
        text = judge(times, rss, FREED, FAST)
        self.assertEqual(text.count("**met**"), 7, text)
        self.assertNotIn("not met", text)

    def test_each_missed_target_is_named(self):
        cases = []
        # One workload 1.3x behind tcmalloc.
        times, rss = good_run()
        times["synth"]["tcmalloc"] = 0.75
        cases.append(("1.2x slower", times, rss, FREED, FAST))
        # mimalloc within 10% on the geomean.
        times, rss = good_run()
        for w in times:
            times[w]["mimalloc"] = 1.05
        cases.append(("1.10 against mimalloc", times, rss, FREED, FAST))
        # More memory than glibc.
        times, rss = good_run()
        for w in rss:
            rss[w]["glibc"] = 9.0
        cases.append(("Peak RSS", times, rss, FREED, FAST))
        # Gives back less than jemalloc.
        times, rss = good_run()
        cases.append(("Fragmentation", times, rss, dict(FREED, strata=495), FAST))
        # A program slower than glibc (and so than the best peer).
        times, rss = good_run()
        times["prog-a"]["strata"] = 2.5
        cases.append(("Each real program", times, rss, FREED, FAST))
        # More instructions than mimalloc.
        times, rss = good_run()
        cases.append(("Fast path", times, rss, FREED,
                      {"mimalloc": {"fixed32": 52.0}, "strata": {"fixed32": 70.0}}))
        for target, times, rss, freed, fast in cases:
            text = judge(times, rss, freed, fast)
            line = next(line for line in text.splitlines() if target in line)
            self.assertIn("**not met**", line, text)

    def test_nothing_to_judge_without_every_peer(self):
        times, rss = good_run()
        recs = records(times, rss, FREED)
        works = [workload(w, "synthetic") for w in times]
        summary = run.summarize(recs, works, ["glibc", "strata"], "strata")
        memory = run.memory_table(recs, works, ["glibc", "strata"])
        self.assertEqual(run.targets_section(summary, memory, {}, works, ["glibc", "strata"]),
                         [])


if __name__ == "__main__":
    unittest.main()
