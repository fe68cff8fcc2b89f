"""NVIDIA Jetson (JetPack 6, L4T r36, Orin): tegrastats lines, input power while a benchmark runs, the nvpmodel
power mode and the jetson_clocks state.

tegrastats prints one line per interval, fields separated by spaces (NVIDIA's Jetson Linux Developer Guide,
"tegrastats Utility"; the r36 lines start with a ``MM-DD-YYYY HH:MM:SS`` time stamp)::

    RAM used/totalMB (lfb NxZMB) SWAP used/totalMB (cached ZMB) CPU [load%@MHz,...|off,...]
    EMC_FREQ load%@MHz GR3D_FREQ load%@[MHz,...] ... <sensor>@<degrees>C ... <RAIL> <now>mW/<avg>mW ...

Rails differ by module: Orin Nano / Orin NX measure the module input (``VDD_IN``) besides ``VDD_CPU_GPU_CV`` and
``VDD_SOC``; AGX Orin has no ``VDD_IN`` rail (``VDD_GPU_SOC``, ``VDD_CPU_CV``, ``VIN_SYS_5V0``,
``VDDQ_VDD2_1V8AO``), so its input power is taken as the sum of its rails and says so (``input_source``).
Fields this parser does not know (NVENC, VIC, APE, ...) are skipped.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field

from edgeseg.errors import EdgeSegError

_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\](?:@(\d+))?")
_CORE = re.compile(r"^(\d+)%(?:@(\d+))?$")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%(?:@(\d+))?")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?")
_TEMP = re.compile(r"(?:^|\s)([A-Za-z][\w-]*)@(-?\d+(?:\.\d+)?)C(?=\s|$)")
_RAIL = re.compile(r"(?:^|\s)([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_INPUT_RAILS = ("VDD_IN", "POM_5V_IN")  # module input: Orin Nano/NX (r35, r36); Nano/TX2 (r32)


@dataclass
class TegraStats:
    """One tegrastats line. CPU loads are None for a core that is off; frequencies in MHz; power in mW."""

    ram_used_mb: int
    ram_total_mb: int
    swap_used_mb: int | None = None
    swap_total_mb: int | None = None
    cpu_load: list[int | None] = field(default_factory=list)
    cpu_freq_mhz: list[int | None] = field(default_factory=list)
    emc_load: int | None = None
    emc_freq_mhz: int | None = None
    gpu_load: int | None = None
    gpu_freq_mhz: list[int] = field(default_factory=list)  # one per GPC on some modules
    temperatures_c: dict[str, float] = field(default_factory=dict)
    rails_mw: dict[str, tuple[int, int]] = field(default_factory=dict)  # rail -> (now, average since start)

    @property
    def input_source(self) -> str | None:
        """Where ``input_power_mw`` comes from: the input rail's name, 'sum of rails', or None (no rails)."""
        rail = next((r for r in _INPUT_RAILS if r in self.rails_mw), None)
        return rail or ("sum of rails" if self.rails_mw else None)

    @property
    def input_power_mw(self) -> int | None:
        """The module's input power now: VDD_IN where measured, else the sum of the rails (AGX Orin)."""
        source = self.input_source
        if source is None:
            return None
        if source in self.rails_mw:
            return self.rails_mw[source][0]
        return sum(now for now, _ in self.rails_mw.values())


def parse_tegrastats(line: str) -> TegraStats:
    """One tegrastats line as a ``TegraStats``. A line without ``RAM used/totalMB`` is refused."""
    ram = _RAM.search(line)
    if ram is None:
        raise EdgeSegError(f"not a tegrastats line (no 'RAM used/totalMB'): {line.strip()[:120]!r}",
                           "pass the lines tegrastats prints (JetPack 5/6)")
    s = TegraStats(int(ram.group(1)), int(ram.group(2)))
    if swap := _SWAP.search(line):
        s.swap_used_mb, s.swap_total_mb = int(swap.group(1)), int(swap.group(2))
    if cpu := _CPU.search(line):
        shared = int(cpu.group(2)) if cpu.group(2) else None  # old form: CPU [a%,b%]@MHz
        for core in filter(None, (c.strip() for c in cpu.group(1).split(","))):
            if core == "off":
                s.cpu_load.append(None)
                s.cpu_freq_mhz.append(None)
                continue
            m = _CORE.match(core)
            if m is None:
                raise EdgeSegError(f"tegrastats CPU entry {core!r} is not 'load%@MHz' or 'off'", "pass an unaltered line")
            s.cpu_load.append(int(m.group(1)))
            s.cpu_freq_mhz.append(int(m.group(2)) if m.group(2) else shared)
    if emc := _EMC.search(line):
        s.emc_load = int(emc.group(1))
        s.emc_freq_mhz = int(emc.group(2)) if emc.group(2) else None
    if gr3d := _GR3D.search(line):
        s.gpu_load = int(gr3d.group(1))
        s.gpu_freq_mhz = [int(f) for f in gr3d.group(2).split(",") if f] if gr3d.group(2) else []
    # -256C is what tegrastats prints for a sensor that is absent or off (e.g. AGX Orin's cv0..cv2): left out
    s.temperatures_c = {name: float(v) for name, v in _TEMP.findall(line) if float(v) > -256}
    s.rails_mw = {name: (int(now), int(avg)) for name, now, avg in _RAIL.findall(line)
                  if name not in ("RAM", "SWAP", "IRAM")}
    return s


@dataclass
class PowerSummary:
    samples: int
    input_source: str
    mean_w: float
    max_w: float

    def fields(self, throughput_ips: float | None = None) -> dict:
        """The report row's power fields; ``fps_per_watt`` = images/s over mean input watts."""
        out = {"power_w_mean": self.mean_w, "power_w_max": self.max_w, "power_samples": self.samples,
               "power_source": f"tegrastats {self.input_source}"}
        if throughput_ips is not None and self.mean_w > 0:
            out["fps_per_watt"] = throughput_ips / self.mean_w
        return out


def summarize_power(lines) -> PowerSummary:
    """Mean and max input power (W) over tegrastats lines (blank lines skipped; any other line must parse)."""
    watts: list[float] = []
    sources: set[str] = set()
    for line in lines:
        if not line.strip():
            continue
        s = parse_tegrastats(line)
        if s.input_power_mw is None:
            raise EdgeSegError("tegrastats reports no power rails", "run on a Jetson whose module has INA3221 monitors")
        watts.append(s.input_power_mw / 1000)
        sources.add(str(s.input_source))
    if not watts:
        raise EdgeSegError("no tegrastats samples were taken during the measurement",
                           "measure longer (more --repeats) or sample more often (--interval)")
    return PowerSummary(len(watts), ", ".join(sorted(sources)), sum(watts) / len(watts), max(watts))


class PowerSampler:
    """Runs ``tegrastats --interval MS`` while the ``with`` block runs; ``summary()`` afterwards gives its input
    power. Lines printed before ``__enter__`` returns or after ``__exit__`` began are not kept."""

    def __init__(self, interval_ms: int = 100, tegrastats: str = "tegrastats"):
        self.interval_ms = int(interval_ms)
        self.tegrastats = tegrastats
        self.lines: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> PowerSampler:
        exe = shutil.which(self.tegrastats)
        if exe is None:
            raise EdgeSegError(f"'{self.tegrastats}' is not on PATH", "sample power on a Jetson (JetPack 6)")
        self.lines = []
        self._proc = subprocess.Popen([exe, "--interval", str(self.interval_ms)], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self.lines.append(line)

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)

    def summary(self) -> PowerSummary:
        return summarize_power(list(self.lines))

    def fields(self, throughput_ips: float | None = None) -> dict:
        """The report row's power fields (``edgeseg.bench.timing.Probe``: bench passes this sampler in)."""
        return self.summary().fields(throughput_ips)


def power_sampler_from_env() -> PowerSampler | None:
    """With EDGESEG_POWER_INTERVAL_MS set (scripts/jetson/bench.sh), a tegrastats sampler that ``edgeseg bench`` runs
    while the variants are timed; a run of one variant gets power_w_mean/max and fps_per_watt in its row."""
    import os

    ms = os.environ.get("EDGESEG_POWER_INTERVAL_MS")
    if not ms:
        return None
    if not ms.isdigit() or int(ms) <= 0:
        raise EdgeSegError(f"EDGESEG_POWER_INTERVAL_MS={ms!r} is not a positive number of milliseconds",
                           "set it to e.g. 100, or unset it")
    return PowerSampler(int(ms))


@dataclass
class PowerMode:
    name: str
    id: int | None


def parse_nvpmodel(text: str) -> PowerMode:
    """``nvpmodel -q`` output: 'NV Power Mode: NAME' and the mode id on the next line (NVPM warnings skipped)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln.startswith("NV Power Mode:"):
            name = ln.split(":", 1)[1].strip()
            mode_id = int(lines[i + 1]) if i + 1 < len(lines) and lines[i + 1].isdigit() else None
            if name:
                return PowerMode(name, mode_id)
    raise EdgeSegError("no 'NV Power Mode:' line in the nvpmodel output", "pass what 'nvpmodel -q' prints")


@dataclass
class ClocksState:
    """``jetson_clocks --show``: per online CPU (min, max, current kHz), GPU and EMC (min, max, current Hz)."""

    cpus: dict[str, tuple[int, int, int]]
    gpu: tuple[int, int, int] | None
    emc: tuple[int, int, int] | None
    power_mode: str | None

    @property
    def locked(self) -> bool:
        """jetson_clocks is on: every online CPU and the GPU have min = max (clocks pinned to their maximum)."""
        pinned = list(self.cpus.values()) + ([self.gpu] if self.gpu else [])
        return bool(pinned) and all(mn == mx for mn, mx, _ in pinned)


_FREQS = re.compile(r"MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)")


def _triple(m: re.Match) -> tuple[int, int, int]:
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def parse_jetson_clocks(text: str) -> ClocksState:
    cpus: dict[str, tuple[int, int, int]] = {}
    gpu: tuple[int, int, int] | None = None
    emc: tuple[int, int, int] | None = None
    mode: str | None = None
    for ln in text.splitlines():
        ln = ln.strip()
        m = _FREQS.search(ln)
        if re.match(r"cpu\d+:", ln) and m and "Online=1" in ln:
            cpus[ln.split(":", 1)[0]] = _triple(m)
        elif ln.startswith("GPU ") and m:
            gpu = _triple(m)
        elif ln.startswith("EMC ") and m:
            emc = _triple(m)
        elif ln.startswith("NV Power Mode:"):
            mode = ln.split(":", 1)[1].strip()
    if not cpus and gpu is None:
        raise EdgeSegError("no CPU or GPU lines in the jetson_clocks output", "pass what 'jetson_clocks --show' prints")
    return ClocksState(cpus, gpu, emc, mode)


def _run(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        raise EdgeSegError(f"'{cmd[0]}' is not on PATH", "run on a Jetson (JetPack 6)")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise EdgeSegError(f"'{' '.join(cmd)}' failed: {r.stderr.strip()[:200]}", "run it with sudo")
    return r.stdout


def power_mode() -> PowerMode:
    return parse_nvpmodel(_run(["nvpmodel", "-q"]))


def clocks_state() -> ClocksState:
    """Needs root (jetson_clocks reads debugfs); bench.sh runs it with sudo and passes the text in."""
    return parse_jetson_clocks(_run(["jetson_clocks", "--show"]))


def merge_reports(parts: list[dict], nvpmodel_text: str | None = None, clocks_text: str | None = None) -> dict:
    """One bench report from several one-variant runs (scripts/jetson/bench.sh times each variant alone so its
    power is its own): rows concatenated, the first part's machine and input, notes kept once each, and the power
    mode and jetson_clocks state (from the recorded command outputs) as notes."""
    if not parts:
        raise EdgeSegError("no bench reports to merge", "check that 'edgeseg bench' wrote its JSON reports")
    report = {k: v for k, v in parts[0].items() if k not in ("rows", "notes", "examples")}
    report["rows"] = [r for p in parts for r in p.get("rows", [])]
    notes = list(dict.fromkeys(n for p in parts for n in p.get("notes") or []))
    if nvpmodel_text is not None:
        try:
            m = parse_nvpmodel(nvpmodel_text)
            notes.append(f"nvpmodel power mode {m.name}" + (f" (id {m.id})" if m.id is not None else ""))
        except EdgeSegError:
            notes.append("nvpmodel power mode not read")
    if clocks_text is not None:
        try:
            c = parse_jetson_clocks(clocks_text)
            notes.append("jetson_clocks " + ("on (CPU and GPU clocks pinned to their maximum)" if c.locked
                                             else "off (clocks scale with load)"))
        except EdgeSegError:
            notes.append("jetson_clocks state not read")
    notes.append("each variant timed alone, tegrastats sampling the input power meanwhile; agreement is not "
                 "measured in these runs")
    report["notes"] = notes
    return report


def main(argv: list[str] | None = None) -> None:
    """``python -m edgeseg.deploy.jetson merge``: scripts/jetson/bench.sh's last step."""
    import argparse
    import json
    from pathlib import Path

    from edgeseg.bench import write_report

    p = argparse.ArgumentParser(prog="python -m edgeseg.deploy.jetson")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("merge", help="one report (JSON, markdown, plot) from one-variant bench reports")
    m.add_argument("parts", nargs="+", type=Path)
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--name", required=True)
    m.add_argument("--nvpmodel", type=Path, help="the saved output of 'nvpmodel -q'")
    m.add_argument("--clocks", type=Path, help="the saved output of 'jetson_clocks --show'")
    a = p.parse_args(argv)

    def text(path):
        return path.read_text() if path is not None and path.exists() else None

    try:
        report = merge_reports([json.loads(f.read_text()) for f in a.parts], text(a.nvpmodel), text(a.clocks))
    except (OSError, ValueError, EdgeSegError) as e:
        raise SystemExit(f"error: {e}") from None
    size = report.get("size") or ["?", "?"]
    title = f"edgeseg on Jetson at {report.get('batch', 1)}×3×{size[0]}×{size[1]}: FPS and FPS per watt"
    for path in write_report(report, a.out, a.name, title):
        print(path)


if __name__ == "__main__":
    main()
