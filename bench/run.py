#!/usr/bin/env python3
"""strata benchmark runner.

Runs every benchmark workload under glibc, jemalloc, tcmalloc, mimalloc and
strata (through LD_PRELOAD), interleaved round by round, and reports median
wall time, CPU time and peak RSS per workload (each run measured with wait4's
rusage by bench/bin/rusage_exec), each allocator's ratio to strata and the
geometric means, as Markdown, CSV and SVG charts.

  bench/run.py                 full run (5 rounds, about 20-30 minutes)
  bench/run.py --quick         one short round of everything (a few minutes)
  bench/run.py --smoke         tiny round, strata and glibc only, outputs must
                               match; exits 1 on any crash or difference and
                               77 if libstrata.so is missing (for ctest)
  bench/run.py --list          list the workloads

Before running it builds the benchmark programs with
`cmake --build BUILD --target strata_bench_programs` (not the library; skip
with --no-build) and installs missing peer allocators and program packages
with apt-get (skip with --no-install). See bench/README.md.
"""
import argparse
import csv
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PROGRAMS_DIR = BENCH_DIR / "programs"
sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, str(BENCH_DIR / "fastpath"))
sys.path.insert(0, str(PROGRAMS_DIR))

import measure as fastpath  # noqa: E402  (bench/fastpath/measure.py)
import git_stream  # noqa: E402  (bench/programs/git_stream.py)

SKIP = 77  # exit code ctest treats as "skipped"
LIB_DIR = "/usr/lib/x86_64-linux-gnu"
ALLOCATORS = ("glibc", "jemalloc", "tcmalloc", "mimalloc", "strata")
# Peer allocator: (library to preload, Debian package that ships it).
PEERS = {
    "jemalloc": (LIB_DIR + "/libjemalloc.so.2", "libjemalloc2"),
    "tcmalloc": (LIB_DIR + "/libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
    "mimalloc": (LIB_DIR + "/libmimalloc.so.2", "libmimalloc2.0"),
}
COLORS = {"glibc": "#7f7f7f", "jemalloc": "#1f77b4", "tcmalloc": "#ff7f0e",
          "mimalloc": "#2ca02c", "strata": "#d62728"}
EXTRA_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf")  # --with builds, in turn
MODES = ("smoke", "quick", "full")
DEFAULT_TIMEOUT = {"smoke": 120, "quick": 300, "full": 900}
# Lines a workload prints that may differ between allocators.
UNCOMPARED_PREFIX = "rss:"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Workloads

@dataclass
class Workload:
    """A program run once per allocator and round.

    `sizes` maps each mode to the program's arguments. Subclasses for the
    real programs override setup() and command(), or run() entirely.
    """
    name: str
    group: str  # "synthetic" or "programs"
    about: str
    sizes: dict = field(default_factory=dict)
    binary: str = ""
    packages: tuple = ()  # Debian packages the workload needs
    tools: tuple = ()  # executables that must exist

    def missing_tools(self):
        return [t for t in self.tools if not shutil.which(t)]

    def setup(self, ctx):
        """Once per workload, untimed."""

    def command(self, ctx, rundir):
        """(argv, extra environment, path for stdin or None)."""
        return [str(ctx.bin_dir / self.binary)] + self.sizes[ctx.mode], {}, None

    def run(self, ctx, preload, rundir):
        argv, extra, stdin = self.command(ctx, rundir)
        return execute(ctx, argv, preload, extra, rundir, stdin)


def synthetic(base, binary, about, threads, smoke, quick, full):
    """One workload per thread count (name-Nt); None for single-threaded."""
    sizes = {"smoke": smoke.split(), "quick": quick.split(), "full": full.split()}
    if threads is None:
        return [Workload(base, "synthetic", about, sizes, binary)]
    return [Workload("%s-%dt" % (base, t), "synthetic", about,
                     {m: ["--threads", str(t)] + a for m, a in sizes.items()}, binary)
            for t in threads]


THREADS = (1, 2, 8)
SYNTHETIC = [
    *synthetic("larson", "larson", "server simulation, cross-thread frees", THREADS,
               "--slots 800 --rounds 3 --ops 2000",
               "--slots 8000 --rounds 40 --ops 100000",
               "--slots 8000 --rounds 60 --ops 150000"),
    *synthetic("xmalloc", "xmalloc", "producers allocate, consumers free", THREADS,
               "--batches 200",
               "--batches 60000",
               "--batches 80000"),
    *synthetic("cache-scratch", "cache_scratch", "passive false sharing", THREADS,
               "--iters 200 --writes 10",
               "--iters 80000 --writes 1000",
               "--iters 80000 --writes 2000"),
    *synthetic("cache-thrash", "cache_thrash", "active false sharing", THREADS,
               "--iters 200 --writes 10",
               "--iters 80000 --writes 1000",
               "--iters 80000 --writes 2000"),
    *synthetic("mstress", "mstress", "threads generations, migrating objects, realloc",
               THREADS,
               "--generations 2 --items 400 --ops 4000 --max-big 262144",
               "--generations 10 --items 20000 --ops 150000",
               "--generations 10 --items 40000 --ops 250000"),
    *synthetic("alloc-test", "alloc_test", "random 16 B-64 KiB at a fixed live set", THREADS,
               "--live 400 --ops 20000",
               "--live 8000 --ops 2000000",
               "--live 8000 --ops 3000000"),
    *synthetic("glibc-simple", "glibc_simple", "tight malloc/free of small sizes", None,
               "--iters 20",
               "--iters 3000",
               "--iters 6000"),
    *synthetic("glibc-thread", "glibc_thread", "per-thread random small sizes", THREADS,
               "--ops 100000",
               "--ops 5000000",
               "--ops 12000000"),
    *synthetic("malloc-large", "malloc_large", "5-25 MiB blocks, touched", None,
               "--iters 10",
               "--iters 250",
               "--iters 800"),
    *synthetic("rbtree", "rbtree", "tree of small nodes, long- and short-lived", None,
               "--base 1000 --ops 5000",
               "--base 100000 --ops 200000",
               "--base 100000 --ops 250000"),
    *synthetic("fragmentation", "fragmentation", "memory returned after scattered frees", None,
               "--live 8M",
               "--live 256M",
               "--live 512M"),
    *synthetic("realloc-growth", "realloc_growth", "buffers and strings grown by realloc",
               None,
               "--max 1M --strings 100 --appends 10 --repeat 1",
               "--max 64M --strings 4000 --appends 100 --repeat 1",
               "--max 256M --strings 6000 --appends 150 --repeat 1"),
    *synthetic("thread-churn", "thread_churn", "threads created and ending while allocating",
               THREADS,
               "--spawns 20 --ops 200",
               "--spawns 800 --ops 4000",
               "--spawns 2000 --ops 5000"),
]


class Python(Workload):
    def command(self, ctx, rundir):
        env = {"PYTHONHASHSEED": "0", "PYTHONMALLOC": "malloc", "PYTHONDONTWRITEBYTECODE": "1"}
        return ([self.tools[0], str(PROGRAMS_DIR / "py_objects.py")] + self.sizes[ctx.mode],
                env, None)


class Perl(Workload):
    def command(self, ctx, rundir):
        return (["perl", str(PROGRAMS_DIR / "text.pl")] + self.sizes[ctx.mode],
                {"PERL_HASH_SEED": "0"}, None)


class Sqlite(Workload):
    def command(self, ctx, rundir):
        n = self.sizes[ctx.mode][0]
        return (["sqlite3", "-cmd", ".parameter set @n %s" % n, str(rundir / "bench.db")], {},
                PROGRAMS_DIR / "sqlite.sql")


class Git(Workload):
    def setup(self, ctx):
        files, commits = (int(x) for x in self.sizes[ctx.mode])
        self.stream = ctx.work_dir / ("git-%s.fi" % ctx.mode)
        git_stream.write_stream(files, commits, self.stream)

    def command(self, ctx, rundir):
        return (["sh", str(PROGRAMS_DIR / "git_workload.sh"), str(self.stream), str(rundir)],
                {}, None)


class Gxx(Workload):
    def command(self, ctx, rundir):
        scale = self.sizes[ctx.mode][0]
        script = ('g++ -std=c++20 -O2 -DSTRATA_TEMPLATE_SCALE=%s "$1" -o "$2" && "$2"' % scale)
        return (["sh", "-c", script, "sh", str(PROGRAMS_DIR / "templates.cpp"),
                 str(rundir / "templates")], {}, None)


class Redis(Workload):
    """redis-server under the allocator, driven by redis-benchmark (not
    preloaded) on 127.0.0.1 with a bounded number of requests. Wall time is
    from server start to exit; CPU and RSS are the server's. The output is
    only checked for having run: throughput lines go to the log."""
    # redis-server links jemalloc itself; for the glibc column libc.so.6 is
    # preloaded so that glibc's malloc comes first in symbol lookup.
    glibc_preload = "libc.so.6"
    tests = "set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,mset"

    def run(self, ctx, preload, rundir):
        requests = self.sizes[ctx.mode][0]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server_argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no", "--dir", str(rundir),
                       "--daemonize", "no", "--protected-mode", "yes"]
        client_argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-q",
                       "-n", requests, "-c", "16", "-r", "100000", "-d", "256", "-t", self.tests]
        with open(rundir / "server.log", "wb") as slog, open(rundir / "client.log", "wb") as clog:
            server = Launch(ctx, server_argv, preload or self.glibc_preload, {}, rundir, None,
                            slog, subprocess.STDOUT)
            status = "ok"
            try:
                if not wait_for_port(port, server.proc, 20):
                    status = "server did not start"
                else:
                    client = subprocess.run(client_argv, env=clean_env({}), stdout=clog,
                                            stderr=subprocess.STDOUT, timeout=ctx.timeout,
                                            check=False)
                    if client.returncode != 0:
                        status = "redis-benchmark exit %d" % client.returncode
            except subprocess.TimeoutExpired:
                status = "timeout"
            send_shutdown(port)
            m = server.wait(60)
        if status != "ok":
            m.status = status
        m.stdout = "redis: ran %s requests per test (%s)\n" % (requests, self.tests) \
            if m.status == "ok" else ""
        m.log = (rundir / "server.log").read_text(errors="replace") + \
            (rundir / "client.log").read_text(errors="replace")
        return m


PROGRAMS = [
    Python("python", "programs", "python3 builds, sorts and groups objects (PYTHONMALLOC=malloc)",
           {"smoke": ["2000"], "quick": ["40000"], "full": ["80000"]},
           packages=("python3",), tools=("/usr/bin/python3",)),
    Perl("perl", "programs", "perl splits, counts and rewrites generated text",
         {"smoke": ["1000"], "quick": ["20000"], "full": ["60000"]},
         packages=("perl",), tools=("perl",)),
    Sqlite("sqlite", "programs", "sqlite3 bulk inserts, indexes, joins, updates",
           {"smoke": ["2000"], "quick": ["100000"], "full": ["250000"]},
           packages=("sqlite3",), tools=("sqlite3",)),
    Git("git", "programs", "git imports, checks out, logs, greps, blames, repacks a history",
        {"smoke": ["50", "25"], "quick": ["1000", "150"], "full": ["2000", "250"]},
        packages=("git",), tools=("git",)),
    Gxx("g++", "programs", "g++ compiles and links a template-heavy file",
        {"smoke": ["2"], "quick": ["8"], "full": ["20"]},
        packages=("g++",), tools=("g++",)),
    Redis("redis", "programs", "redis-server under redis-benchmark on 127.0.0.1",
          {"smoke": ["1000"], "quick": ["4000"], "full": ["10000"]},
          packages=("redis-server", "redis-tools"), tools=("redis-server", "redis-benchmark")),
]

WORKLOADS = SYNTHETIC + PROGRAMS
SECTIONS = ("synthetic", "programs", "micro", "fastpath")


# ---------------------------------------------------------------------------
# Running and measuring

@dataclass
class Measurement:
    wall: float  # seconds
    cpu: float  # user + system seconds
    maxrss_kib: int
    status: str  # "ok" or what went wrong
    stdout: str
    log: str  # standard error (or the programs' logs)


def describe_exit(code):
    if code < 0:
        try:
            return "killed by %s" % signal.Signals(-code).name
        except ValueError:
            return "killed by signal %d" % -code
    return "exit %d" % code


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def clean_env(extra):
    """The runner's environment without LD_PRELOAD, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env.update(extra)
    return env


class Launch:
    """A command started under bench/bin/rusage_exec, which forks it, waits
    for it with wait4 and writes its wall time, CPU time and peak RSS to a
    file. (Forking from this Python process would make every run's peak RSS
    at least the runner's own; see bench/common/rusage_exec.c.) The command
    gets LD_PRELOAD=preload; the launcher itself runs without it."""

    def __init__(self, ctx, argv, preload, extra_env, cwd, stdin, stdout, stderr):
        fd, self.result = tempfile.mkstemp(dir=ctx.work_dir, suffix=".rusage")
        os.close(fd)
        cmd = [str(ctx.launcher), self.result] + (["--preload", preload] if preload else [])
        self.timed_out = threading.Event()
        self.proc = subprocess.Popen(cmd + ["--"] + argv, env=clean_env(extra_env), cwd=cwd,
                                     stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                     stdout=stdout, stderr=stderr, start_new_session=True)

    def _expire(self):
        self.timed_out.set()
        kill_group(self.proc.pid)

    def wait(self, timeout):
        killer = threading.Timer(timeout, self._expire)
        killer.start()
        try:
            self.proc.wait()
        finally:
            killer.cancel()
        with open(self.result) as f:
            fields = f.read().split()
        os.unlink(self.result)
        if self.timed_out.is_set() or len(fields) != 4:
            status = "timeout" if self.timed_out.is_set() else describe_exit(self.proc.returncode)
            return Measurement(0.0, 0.0, 0, status, "", "")
        code = os.waitstatus_to_exitcode(int(fields[3]))
        return Measurement(float(fields[0]), float(fields[1]), int(fields[2]),
                           "ok" if code == 0 else describe_exit(code), "", "")


def execute(ctx, argv, preload, extra_env, cwd, stdin_path):
    """Runs one command to completion and measures it."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdin = open(stdin_path, "rb") if stdin_path else None
        try:
            m = Launch(ctx, argv, preload, extra_env, cwd, stdin, out, err).wait(ctx.timeout)
        finally:
            if stdin:
                stdin.close()
        out.seek(0)
        err.seek(0)
        m.stdout = out.read().decode(errors="replace")
        m.log = err.read().decode(errors="replace")
    return m


def wait_for_port(port, proc, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def send_shutdown(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"SHUTDOWN NOSAVE\r\n")
            s.recv(64)
    except OSError:
        pass


def comparable(stdout):
    """The output lines that must be identical under every allocator."""
    return "\n".join(line.rstrip() for line in stdout.splitlines()
                     if line.strip() and not line.startswith(UNCOMPARED_PREFIX))


def reported_memory(stdout):
    """{key: MiB} from lines like 'rss: full_mib=123.4'."""
    values = {}
    for line in stdout.splitlines():
        if line.startswith(UNCOMPARED_PREFIX):
            for key, value in re.findall(r"(\w+)=([\d.]+)", line):
                values[key] = float(value)
    return values


# ---------------------------------------------------------------------------
# Environment: allocators, packages, build

@dataclass
class Context:
    mode: str
    rounds: int
    build_dir: Path
    bin_dir: Path
    out_dir: Path
    work_dir: Path
    timeout: float
    allocators: dict  # name -> library to preload, None for glibc
    launcher: Path  # bench/bin/rusage_exec


def apt_install(packages):
    """apt-get install -y, with one apt-get update and retry on failure."""
    if not packages:
        return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log("cannot install %s: not root or no apt-get" % " ".join(packages))
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    env.pop("LD_PRELOAD", None)
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    log("installing: " + " ".join(packages))
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=False).returncode == 0:
        return True
    subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL, check=False)
    return subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=False).returncode == 0


def resolve_allocators(names, strata_lib, install):
    chosen = {}
    missing_peers = [PEERS[n][1] for n in names if n in PEERS and not os.path.exists(PEERS[n][0])]
    if missing_peers and install:
        apt_install(missing_peers)
    for name in names:
        if name == "glibc":
            chosen[name] = None
        elif name == "strata":
            if os.path.exists(strata_lib):
                chosen[name] = str(strata_lib)
            else:
                log("strata: %s not found - skipping strata (build it with "
                    "`cmake --build BUILD --target strata_shared`, or pass --strata-lib)"
                    % strata_lib)
        elif os.path.exists(PEERS[name][0]):
            chosen[name] = PEERS[name][0]
        else:
            log("%s: %s not found - skipping (apt-get install %s)" % (name, PEERS[name][0],
                                                                    PEERS[name][1]))
    return chosen


def build_programs(build_dir):
    if not (build_dir / "CMakeCache.txt").exists():
        log("%s is not a configured build directory; configure it first:\n"
            "  cmake -S %s -B %s" % (build_dir, REPO_DIR, build_dir))
        return False
    cmd = ["cmake", "--build", str(build_dir), "--target", "strata_bench_programs",
           "-j", str(os.cpu_count() or 2)]
    log("building: " + " ".join(cmd))
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False).returncode == 0


def select_workloads(only):
    """--only accepts workload names (larson-8t), base names (larson) and
    sections (synthetic, programs, micro, fastpath)."""
    if not only:
        return list(WORKLOADS), set(SECTIONS)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen, sections = [], set()
    for want in wanted:
        if want in SECTIONS:
            sections.add(want)
            chosen += [w for w in WORKLOADS if w.group == want]
            continue
        hits = [w for w in WORKLOADS if w.name == want or re.fullmatch(
            re.escape(want) + r"-\d+t", w.name)]
        if not hits:
            sys.exit("unknown workload: %s (see --list)" % want)
        chosen += hits
        sections.add(hits[0].group)
    unique = []
    for w in chosen:
        if w not in unique:
            unique.append(w)
    return unique, sections


# ---------------------------------------------------------------------------
# The run itself

@dataclass
class Record:
    workload: str
    allocator: str
    round: int
    m: Measurement
    output_ok: bool = True


def run_workloads(ctx, workloads, records, failures):
    reference_name = "glibc" if "glibc" in ctx.allocators else next(iter(ctx.allocators))
    for w in workloads:
        missing = w.missing_tools()
        if missing:
            log("%-18s skipped: %s not found (apt-get install %s)" % (
                w.name, ", ".join(missing), " ".join(w.packages)))
            continue
        w.setup(ctx)
        reference = None
        for rnd in range(ctx.rounds):
            for name, lib in round_order(ctx.allocators, rnd):
                rundir = ctx.work_dir / ("%s.%s.%d" % (safe(w.name), name, rnd))
                shutil.rmtree(rundir, ignore_errors=True)
                rundir.mkdir(parents=True)
                m = w.run(ctx, lib, rundir)
                shutil.rmtree(rundir, ignore_errors=True)
                rec = Record(w.name, name, rnd, m)
                if m.status == "ok":
                    out = comparable(m.stdout)
                    if reference is None and name == reference_name:
                        reference = out
                    elif reference is not None and out != reference:
                        rec.output_ok = False
                        m.status = "output differs from %s" % reference_name
                records.append(rec)
                save_logs(ctx, rec)
                if m.status != "ok":
                    failures.append(rec)
                log("%-18s %-9s round %d  %8.3f s wall %8.3f s cpu %8.1f MiB  %s" % (
                    w.name, name, rnd + 1, m.wall, m.cpu, m.maxrss_kib / 1024, m.status))


def round_order(allocators, rnd):
    """The allocators in the order round `rnd` runs them: rotated by one place
    each round, so that a drift within a round (git's time grew by half from
    the first allocator of a round to the last in some runs) does not always
    fall on the same allocator. Round 0 keeps the given order (glibc first:
    its output is the reference)."""
    items = list(allocators.items())
    shift = rnd % len(items)
    return items[shift:] + items[:shift]


def default_work_root():
    """Where the workloads' files go: tmpfs when it has room. On a disk file
    system the kernel's own work dominates what writes files: git's run
    took 1.4-2.3 s of CPU time under one allocator from one run to the
    next, and 0.80-0.84 s on tmpfs."""
    shm = Path("/dev/shm")
    try:
        if os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= 2 << 30:
            return shm
    except OSError:
        pass
    return None  # the system's temporary directory


def safe(name):
    return re.sub(r"[^\w.-]", "_", name)


def save_logs(ctx, rec):
    """Keeps the output of the first round and of every failed run."""
    if rec.round != 0 and rec.m.status == "ok":
        return
    base = ctx.out_dir / "logs" / ("%s.%s.%d" % (safe(rec.workload), rec.allocator, rec.round))
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(base.suffix + ".out").write_text(rec.m.stdout)
    base.with_suffix(base.suffix + ".err").write_text(rec.m.log)


def run_micro(ctx, failures):
    """Google Benchmark binary under each allocator: {allocator: {bench: [ns/op per round]}}."""
    binary = ctx.bin_dir / "micro"
    if not binary.exists():
        log("micro: %s not found (install libbenchmark-dev and rebuild) - skipped" % binary)
        return {}
    min_time = {"smoke": "0.001", "quick": "0.02", "full": "0.2"}[ctx.mode]
    results = {name: {} for name in ctx.allocators}
    for rnd in range(ctx.rounds):
        for name, lib in ctx.allocators.items():
            json_path = ctx.work_dir / ("micro.%s.json" % name)
            m = execute(ctx, [str(binary), "--benchmark_min_time=" + min_time,
                              "--benchmark_out_format=json", "--benchmark_out=" + str(json_path)],
                        lib, {}, ctx.work_dir, None)
            log("%-18s %-9s round %d  %8.3f s wall  %s" % ("micro", name, rnd + 1, m.wall,
                                                           m.status))
            if m.status != "ok":
                rec = Record("micro", name, rnd, m)
                failures.append(rec)
                save_logs(ctx, rec)
                continue
            data = json.loads(json_path.read_text())
            for b in data.get("benchmarks", []):
                if b.get("run_type", "iteration") != "iteration":
                    continue
                if b.get("items_per_second"):
                    ns = 1e9 / b["items_per_second"]
                else:
                    ns = b["real_time"] * {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[
                        b.get("time_unit", "ns")]
                results[name].setdefault(b["name"], []).append(ns)
    return results


def run_fastpath(ctx, failures):
    binary = ctx.bin_dir / "fastpath"
    if not shutil.which("valgrind"):
        log("fastpath: valgrind not found (apt-get install valgrind) - skipped")
        return {}
    log("fastpath: counting instructions with callgrind ...")
    try:
        return fastpath.measure(binary, ctx.allocators)
    except RuntimeError as e:
        log("fastpath failed: %s" % e)
        failures.append(Record("fastpath", "-", 0, Measurement(0, 0, 0, str(e)[:200], "", "")))
        return {}


# ---------------------------------------------------------------------------
# Summaries and reports

METRICS = (("wall", "Wall time", "s", lambda m: m.wall),
           ("cpu", "CPU time (user + sys)", "s", lambda m: m.cpu),
           ("rss", "Peak RSS", "MiB", lambda m: m.maxrss_kib / 1024))


def geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def paired_ratio(records, workload, name, baseline, get):
    """The median over the rounds of the allocator's value divided by the
    baseline's in the same round. A round runs every allocator back to back,
    so its ratio cancels the machine's drift from one round to the next
    (git's times doubled between the first and the last of four rounds under
    every allocator), which a ratio of medians taken over different rounds
    does not."""
    by_round = {}
    for r in records:
        if r.workload == workload and r.m.status == "ok" and r.allocator in (name, baseline):
            by_round.setdefault(r.round, {})[r.allocator] = get(r.m)
    ratios = [v[name] / v[baseline] for v in by_round.values()
              if name in v and baseline in v and v[baseline]]
    return statistics.median(ratios) if ratios else None


def summarize(records, workloads, allocators, baseline):
    """{metric: {workload: {allocator: (median, ratio)}}} plus geometric means
    (ratio: see paired_ratio)."""
    summary = {}
    for key, _, _, get in METRICS:
        table = {}
        for w in workloads:
            row = {}
            for name in allocators:
                values = [get(r.m) for r in records if r.workload == w.name
                          and r.allocator == name and r.m.status == "ok"]
                row[name] = statistics.median(values) if values else None
            table[w.name] = {n: (v, paired_ratio(records, w.name, n, baseline, get)
                                 if v is not None else None)
                             for n, v in row.items()}
            if all(v is None for v in row.values()):
                del table[w.name]
        means = {n: geomean([table[w][n][1] for w in table]) for n in allocators}
        summary[key] = (table, means)
    return summary


def memory_table(records, workloads, allocators):
    """{(workload, key): {allocator: median MiB}} from the workloads' rss: lines."""
    table = {}
    for w in workloads:
        for name in allocators:
            per_key = {}
            for r in records:
                if r.workload == w.name and r.allocator == name and r.m.status == "ok":
                    for k, v in reported_memory(r.m.stdout).items():
                        per_key.setdefault(k, []).append(v)
            for k, vs in per_key.items():
                table.setdefault((w.name, k), {})[name] = statistics.median(vs)
    return table


def fmt(value, ratio, digits=3):
    if value is None:
        return "-"
    text = ("%%.%df" % digits) % value
    return text if ratio is None else "%s (%.2f)" % (text, ratio)


def markdown_report(ctx, workloads, summary, memory, micro, fast, failures, baseline,
                    charts):
    names = list(ctx.allocators)
    lines = ["# strata benchmark results", ""]
    lines += ["- date: %s" % datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
              "- mode: %s, rounds: %d (allocators interleaved within each round)" % (
                  ctx.mode, ctx.rounds),
              "- machine: %s, %d CPUs, %s, load average at start %s" % (
                  cpu_model(), os.cpu_count() or 0, platform.release(),
                  "%.2f %.2f %.2f" % os.getloadavg()),
              "- allocators: " + ", ".join("%s (%s)" % (n, lib or "no preload")
                                           for n, lib in ctx.allocators.items()),
              "",
              "Each cell is the median over the rounds; in parentheses the ratio to **%s** "
              "(allocator / %s, the median over the rounds of the ratio within each round): "
              "above 1.00 means %s was faster or used less memory." % (
                  baseline, baseline, baseline), ""]
    for key, title, unit, _ in METRICS:
        table, means = summary[key]
        lines += ["## %s (%s)" % (title, unit), ""]
        if key in charts:
            lines += ["![%s](%s)" % (title, charts[key]), ""]
        lines += ["| workload | " + " | ".join(names) + " |",
                  "|---|" + "---:|" * len(names)]
        for wname, row in table.items():
            lines.append("| %s | %s |" % (wname, " | ".join(
                fmt(*row[n], digits=1 if key == "rss" else 3) for n in names)))
        lines.append("| **geometric mean of ratios** | %s |" % " | ".join(
            "**%.2f**" % means[n] if means[n] else "-" for n in names))
        lines.append("")
    if memory:
        lines += ["## Memory reported by the workloads (RSS, MiB)", "",
                  "From the workloads' own `rss:` lines (e.g. fragmentation: RSS after each "
                  "phase). Ratio to %s in parentheses." % baseline, "",
                  "| workload | phase | " + " | ".join(names) + " |",
                  "|---|---|" + "---:|" * len(names)]
        for (wname, k), row in memory.items():
            base = row.get(baseline)
            lines.append("| %s | %s | %s |" % (wname, k, " | ".join(
                fmt(row.get(n), row[n] / base if row.get(n) is not None and base else None, 1)
                for n in names)))
        lines.append("")
    if micro:
        benches = []
        for per in micro.values():
            benches += [b for b in per if b not in benches]
        lines += ["## Micro-benchmarks (ns per operation, median of rounds)", "",
                  "| benchmark | " + " | ".join(micro) + " |", "|---|" + "---:|" * len(micro)]
        for b in benches:
            base = statistics.median(micro[baseline][b]) if micro.get(baseline, {}).get(b) \
                else None
            cells = []
            for n in micro:
                v = statistics.median(micro[n][b]) if micro[n].get(b) else None
                cells.append(fmt(v, v / base if v is not None and base else None, 1))
            lines.append("| %s | %s |" % (b, " | ".join(cells)))
        lines.append("")
    if fast:
        lines += ["## Fast-path instructions per malloc+free pair (callgrind)", "",
                  fastpath.format_table(fast), ""]
    lines += targets_section(summary, memory, fast, workloads, names)
    lines += ["## Failures", ""]
    if failures:
        for r in failures:
            lines.append("- %s under %s, round %d: %s" % (r.workload, r.allocator, r.round + 1,
                                                           r.m.status))
    else:
        lines.append("None: every run exited cleanly and printed the same output as under "
                     "%s." % ("glibc" if "glibc" in ctx.allocators else names[0]))
    lines.append("")
    return "\n".join(lines)


# Every allocator strata is judged against (targets_section).
JUDGED_PEERS = ("glibc", "jemalloc", "tcmalloc", "mimalloc")


def targets_section(summary, memory, fast, workloads, names):
    """The benchmark issue's targets, judged on this run: lines of Markdown,
    or none unless strata is the baseline and every peer ran."""
    if "strata" not in names or any(p not in names for p in JUDGED_PEERS):
        return []
    wall, wall_means = summary["wall"]
    rss_means = summary["rss"][1]

    def verdict(ok):
        return "**met**" if ok else "**not met**"

    lines = ["## Targets", "",
             "The benchmark issue's targets, judged on this run (ratios as in the tables: "
             "peer / strata, above 1.00 in strata's favour).", ""]
    means = ", ".join("%s %.2f" % (p, wall_means[p]) for p in JUDGED_PEERS if wall_means[p])
    ok = all(wall_means[p] and wall_means[p] > 1 for p in JUDGED_PEERS) and \
        wall_means["mimalloc"] >= 1.10
    lines.append("- Wall-time geomean at least 1.10 against mimalloc and above 1.00 against "
                 "every peer: %s (%s)." % (verdict(ok), means))
    behind = []
    for wname, row in wall.items():
        ratios = [(row[p][1], p) for p in JUDGED_PEERS if row[p][1]]
        if ratios:
            best, peer = min(ratios)
            behind.append((1 / best, wname, peer))
    behind.sort(reverse=True)
    if behind:
        lines.append("- No workload more than 1.2x slower than the best peer on it: %s "
                     "(furthest behind: %s)." % (verdict(behind[0][0] <= 1.2), ", ".join(
                         "%s %.2fx behind %s" % (w, x, p) for x, w, p in behind[:3])))
    ok = all(rss_means[p] and rss_means[p] >= 1 for p in ("glibc", "mimalloc"))
    lines.append("- Peak RSS geomean at most glibc's and mimalloc's: %s (glibc %.3f, "
                 "mimalloc %.3f)." % (verdict(ok), rss_means["glibc"] or 0,
                                      rss_means["mimalloc"] or 0))
    freed = memory.get(("fragmentation", "all_free_mib"), {})
    if all(freed.get(n) is not None for n in names):
        best = min(freed[p] for p in JUDGED_PEERS)
        lines.append("- Fragmentation workload gives back at least as much as the best peer: "
                     "%s (resident with all freed: strata %.1f MiB, best peer %.1f)." % (
                         verdict(freed["strata"] <= best), freed["strata"], best))
    programs = [w.name for w in workloads if w.group == "programs" and w.name in wall]
    if programs:
        slower = [w for w in programs if not (wall[w]["glibc"][1] and wall[w]["glibc"][1] >= 1)]
        lines.append("- Each real program at least as fast as glibc: %s (%s)." % (
            verdict(not slower), ", ".join("%s %.3f" % (w, wall[w]["glibc"][1] or 0)
                                            for w in programs)))
        program_means = {p: geomean([wall[w][p][1] for w in programs]) for p in JUDGED_PEERS}
        lines.append("- Real programs' geomean at least as fast as the best peer: %s (%s)." % (
            verdict(all(m and m >= 1 for m in program_means.values())),
            ", ".join("%s %.3f" % (p, m or 0) for p, m in program_means.items())))
    if "strata" in fast and "mimalloc" in fast:
        counts = ", ".join("%s %.1f against %.1f" % (m, fast["strata"][m], fast["mimalloc"][m])
                           for m in fast["strata"])
        lines.append("- Fast path in no more instructions than mimalloc's (a fixed small "
                     "size): %s (%s)." % (verdict(fast["strata"]["fixed32"] <=
                                                  fast["mimalloc"]["fixed32"]), counts))
    return lines + [""]


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def write_csv(path, summary, memory, names):
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["workload", "allocator", "metric", "median", "unit", "ratio_to_baseline"])
        for key, _, unit, _ in METRICS:
            table, means = summary[key]
            for wname, row in table.items():
                for n in names:
                    v, r = row[n]
                    out.writerow([wname, n, key, "" if v is None else "%.6g" % v, unit,
                                  "" if r is None else "%.4f" % r])
            for n in names:
                out.writerow(["geomean", n, key, "", "", "" if means[n] is None
                              else "%.4f" % means[n]])
        for (wname, k), row in memory.items():
            for n in names:
                if n in row:
                    out.writerow([wname, n, "reported:" + k, "%.1f" % row[n], "MiB", ""])


def write_runs_csv(path, records):
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["workload", "allocator", "round", "wall_s", "cpu_s", "maxrss_kib",
                      "status"])
        for r in records:
            out.writerow([r.workload, r.allocator, r.round + 1, "%.4f" % r.m.wall,
                          "%.4f" % r.m.cpu, r.m.maxrss_kib, r.m.status])


def svg_chart(title, table, means, names, baseline):
    """Horizontal bars of each allocator's ratio to the baseline, on a log
    scale centred on 1: a bar to the right means the allocator took longer
    (or used more memory) than the baseline."""
    others = [n for n in names if n != baseline]
    rows = [(w, {n: row[n][1] for n in others}) for w, row in table.items()]
    rows.append(("geometric mean", {n: means[n] for n in others}))
    ratios = [r for _, row in rows for r in row.values() if r]
    if not others or not ratios:
        return None
    lo = max(1 / 16, min(0.5, 2 ** math.floor(math.log2(min(ratios)))))
    hi = min(16.0, max(2.0, 2 ** math.ceil(math.log2(max(ratios)))))
    bar, gap = 11, 10
    left, right, top = 190, 70, 92
    plot_w = 640
    group_h = bar * len(others) + gap
    height = top + group_h * len(rows) + 40
    width = left + plot_w + right

    def x(r):
        r = min(max(r, lo), hi)
        return left + (math.log2(r) - math.log2(lo)) / (math.log2(hi) - math.log2(lo)) * plot_w

    e = []
    e.append('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
             'font-family="sans-serif" font-size="12">' % (width, height))
    e.append('<rect width="100%" height="100%" fill="white"/>')
    e.append('<text x="%d" y="22" font-size="16" font-weight="bold">%s relative to %s</text>'
             % (left - 180, esc(title), baseline))
    e.append('<text x="%d" y="40" fill="#444">log scale; right of 1: the allocator took more '
             'than %s (%s better), left of 1: less</text>' % (left - 180, baseline, baseline))
    for i, n in enumerate(others):  # legend
        lx = left - 180 + i * 120
        e.append('<rect x="%d" y="52" width="14" height="14" fill="%s"/>' % (lx, COLORS[n]))
        e.append('<text x="%d" y="64">%s</text>' % (lx + 20, n))
    bottom = top + group_h * len(rows)
    t = lo
    while t <= hi * 1.0001:  # grid at powers of two
        e.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="%s"/>' % (
            x(t), top - 6, x(t), bottom, "#000" if t == 1 else "#ddd",
            "1.5" if t == 1 else "1"))
        label = ("%g" % t) if t >= 1 else "1/%g" % (1 / t)
        e.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#444">%s</text>' % (
            x(t), top - 10, label))
        e.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#444">%s</text>' % (
            x(t), bottom + 16, label))
        t *= 2
    for gi, (wname, row) in enumerate(rows):
        y0 = top + gi * group_h
        if gi % 2 == 0:
            e.append('<rect x="0" y="%d" width="%d" height="%d" fill="#f4f4f4"/>' % (
                y0, width, group_h))
        if wname == "geometric mean":
            e.append('<line x1="0" y1="%d" x2="%d" y2="%d" stroke="#888"/>' % (y0, width, y0))
        e.append('<text x="%d" y="%.1f" text-anchor="end"%s>%s</text>' % (
            left - 8, y0 + group_h / 2 + 4,
            ' font-weight="bold"' if wname == "geometric mean" else "", esc(wname)))
        for bi, n in enumerate(others):
            r = row.get(n)
            by = y0 + gap / 2 + bi * bar
            if not r:
                e.append('<text x="%.1f" y="%.1f" font-size="10" fill="#888">n/a</text>' % (
                    x(1) + 4, by + bar - 2))
                continue
            x1, x2 = sorted((x(1), x(r)))
            e.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s">'
                     '<title>%s %s: %.2f</title></rect>' % (
                         x1, by, max(x2 - x1, 1), bar - 2, COLORS[n], esc(wname), n, r))
            clipped = r > hi or r < lo
            tx = x(r) + 4 if r >= 1 else x(r) - 4
            e.append('<text x="%.1f" y="%.1f" font-size="10" text-anchor="%s">%s%.2f</text>' % (
                tx, by + bar - 3, "start" if r >= 1 else "end", "&#8811;" if clipped else "", r))
    e.append("</svg>")
    return "\n".join(e) + "\n"


def esc(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def write_reports(ctx, workloads, records, micro, fast, failures, baseline):
    names = list(ctx.allocators)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(records, workloads, names, baseline)
    memory = memory_table(records, workloads, names)
    charts = {}
    for key, title, _, _ in METRICS:
        svg = svg_chart(title, *summary[key], names, baseline)
        if svg:
            charts[key] = "%s.svg" % key
            (ctx.out_dir / charts[key]).write_text(svg)
    report = markdown_report(ctx, workloads, summary, memory, micro, fast, failures, baseline,
                             charts)
    (ctx.out_dir / "results.md").write_text(report)
    write_csv(ctx.out_dir / "results.csv", summary, memory, names)
    write_runs_csv(ctx.out_dir / "runs.csv", records)
    if micro:
        with open(ctx.out_dir / "micro.csv", "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["benchmark", "allocator", "ns_per_op_median"])
            for n, per in micro.items():
                for b, vs in per.items():
                    out.writerow([b, n, "%.3f" % statistics.median(vs)])
    return report


# ---------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one short round with small sizes")
    p.add_argument("--smoke", action="store_true",
                   help="tiny round, strata and glibc only, check outputs; no timing verdicts")
    p.add_argument("--rounds", type=int, help="rounds (default: 5 full, 1 quick and smoke)")
    p.add_argument("--only", help="comma-separated workloads (larson-8t), workload families "
                                  "(larson) or sections (synthetic, programs, micro, fastpath)")
    p.add_argument("--allocators", help="comma-separated subset of " + ",".join(ALLOCATORS))
    p.add_argument("--baseline", default="strata",
                   help="allocator the ratios are relative to (default strata; glibc if "
                        "strata is missing)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results",
                   help="output directory (default bench/results)")
    p.add_argument("--work-root", type=Path,
                   help="where the workloads write their files (default: /dev/shm if it has "
                        "2 GiB free, else the temporary directory)")
    p.add_argument("--build-dir", type=Path, default=REPO_DIR / "build",
                   help="CMake build directory (default: build)")
    p.add_argument("--strata-lib", type=Path, help="libstrata.so (default: BUILD/libstrata.so)")
    p.add_argument("--with", dest="extra", action="append", default=[], metavar="NAME=LIB",
                   help="also run under LIB, reported as NAME, after strata in each round "
                        "(another build to compare with: an A/B run); repeatable")
    p.add_argument("--timeout", type=float, help="seconds before a run is killed")
    p.add_argument("--no-build", action="store_true", help="do not invoke cmake --build")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install anything")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    args = p.parse_args(argv)
    if args.quick and args.smoke:
        p.error("--quick and --smoke exclude each other")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.list:
        for w in WORKLOADS:
            print("%-18s %-9s %s" % (w.name, w.group, w.about))
        print("%-18s %-9s %s" % ("micro", "micro", "Google Benchmark micro-benchmarks"))
        print("%-18s %-9s %s" % ("fastpath", "fastpath", "callgrind instructions per pair"))
        return 0

    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    rounds = args.rounds or (5 if mode == "full" else 1)
    names = args.allocators.split(",") if args.allocators else (
        ["strata", "glibc"] if mode == "smoke" else list(ALLOCATORS))
    for n in names:
        if n not in ALLOCATORS:
            sys.exit("unknown allocator %s (choose from %s)" % (n, ", ".join(ALLOCATORS)))
    # The run order within a round is fixed: glibc, jemalloc, ..., strata.
    names = [n for n in ALLOCATORS if n in names]
    workloads, sections = select_workloads(args.only)
    if mode == "smoke" and not args.only:
        sections.discard("fastpath")  # has its own ctest (fastpath_instructions)

    build_dir = args.build_dir.resolve()
    strata_lib = (args.strata_lib or build_dir / "libstrata.so").resolve()
    install = not (args.no_install or mode == "smoke")
    allocators = resolve_allocators(names, strata_lib, install)
    if mode == "smoke" and "strata" in names and "strata" not in allocators:
        print("SKIP: %s not found; the smoke pass needs strata" % strata_lib)
        return SKIP
    for i, spec in enumerate(args.extra):
        name, _, lib = spec.partition("=")
        if not name or not lib or name in allocators or name in ALLOCATORS:
            sys.exit("--with %s: give NAME=LIB with a new name" % spec)
        if not os.path.exists(lib):
            sys.exit("--with %s: %s not found" % (spec, lib))
        allocators[name] = str(Path(lib).resolve())
        COLORS[name] = EXTRA_COLORS[i % len(EXTRA_COLORS)]
    if not allocators:
        sys.exit("no allocator available")
    baseline = args.baseline if args.baseline in allocators else (
        "glibc" if "glibc" in allocators else next(iter(allocators)))
    if baseline != args.baseline:
        log("ratios are relative to %s (%s is not available)" % (baseline, args.baseline))

    if install:
        wanted = sorted({p for w in workloads for p in w.packages if w.missing_tools()})
        if "fastpath" in sections and not shutil.which("valgrind"):
            wanted.append("valgrind")
        apt_install(wanted)
    if not args.no_build and not build_programs(build_dir):
        sys.exit("building the benchmark programs failed")
    bin_dir = build_dir / "bench" / "bin"
    needed = {w.binary for w in workloads if w.binary} | {"rusage_exec"}
    absent = [b for b in sorted(needed) if not (bin_dir / b).exists()]
    if absent:
        sys.exit("missing programs in %s: %s (cmake --build %s --target strata_bench_programs)"
                 % (bin_dir, ", ".join(absent), build_dir))

    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir / "logs", ignore_errors=True)
    work_dir = Path(tempfile.mkdtemp(prefix="strata-bench-", dir=args.work_root or default_work_root()))
    ctx = Context(mode, rounds, build_dir, bin_dir, out_dir, work_dir,
                  args.timeout or DEFAULT_TIMEOUT[mode], allocators, bin_dir / "rusage_exec")
    log("mode %s, %d round(s), allocators: %s" % (mode, rounds, ", ".join(allocators)))

    records, failures = [], []
    started = time.monotonic()
    try:
        run_workloads(ctx, workloads, records, failures)
        micro = run_micro(ctx, failures) if "micro" in sections else {}
        fast = run_fastpath(ctx, failures) if "fastpath" in sections else {}
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    report = write_reports(ctx, workloads, records, micro, fast, failures, baseline)
    print(report)
    log("took %.0f s; results in %s (results.md, results.csv, runs.csv, *.svg, logs/)" % (
        time.monotonic() - started, out_dir))
    if failures:
        log("%d run(s) failed or printed a different output: see the Failures section"
            % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
