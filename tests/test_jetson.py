"""edgeseg.deploy.jetson: parsing of tegrastats, nvpmodel -q and jetson_clocks --show output; the Jetson scripts'
syntax. Nothing here ran on a Jetson: the inputs are written by hand in the formats NVIDIA documents, field for
field (values are plausible, not captured from a device):

- tegrastats: Jetson Linux Developer Guide r36.x, "tegrastats Utility" (field table: RAM X/Y (lfb NxZ),
  SWAP X/Y (cached Z), CPU [X%@Z,...] or 'off', EMC_FREQ X%@Y, GR3D_FREQ X%@[Y,...], <sensor>@<T>C,
  <rail> <now>mW/<avg>mW) and the r36 "Platform Power and Performance" page for the Orin rails (Orin Nano/NX:
  VDD_IN, VDD_CPU_GPU_CV, VDD_SOC; AGX Orin: VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0, VDDQ_VDD2_1V8AO). r36 lines
  start with a MM-DD-YYYY HH:MM:SS time stamp.
- nvpmodel -q: same guide, "Power Mode Controls" ('NV Power Mode: <name>' then the mode id).
- jetson_clocks --show: same guide, "Maximizing Jetson Orin Performance" (per-CPU, GPU, EMC lines with
  MinFreq/MaxFreq/CurrentFreq).
How sure: the tegrastats field table was read in NVIDIA's docs (Jetson Linux / DRIVE OS "tegrastats Utility");
the per-module rail names, the r36 time stamp, the nvpmodel and jetson_clocks layouts are from those guides as
remembered, not checked against a capture here. A first run on a device should diff a real line against these.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeseg.deploy.jetson import (PowerSampler, parse_jetson_clocks, parse_nvpmodel, parse_tegrastats,
                                   summarize_power)
from edgeseg.errors import EdgeSegError

ROOT = Path(__file__).resolve().parents[1]

# Orin Nano 8GB developer kit, JetPack 6 (r36): 6 cores, one GPU frequency, VDD_IN measured.
ORIN_NANO = ("12-01-2026 04:40:00 RAM 2339/7620MB (lfb 5x4MB) SWAP 0/3810MB (cached 0MB) "
             "CPU [2%@729,1%@729,0%@729,3%@729,off,off] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305] VIC_FREQ 0%@115 "
             "APE 200 cpu@47.5C soc2@46.8C soc0@46.25C gpu@47.031C tj@47.5C soc1@46.468C "
             "VDD_IN 4966mW/4966mW VDD_CPU_GPU_CV 483mW/483mW VDD_SOC 1451mW/1451mW")

# AGX Orin 64GB developer kit, JetPack 6 (r36): 12 cores, two GPC frequencies, no VDD_IN rail.
AGX_ORIN = ("12-01-2026 04:40:01 RAM 3155/62841MB (lfb 6467x4MB) SWAP 0/31421MB (cached 0MB) "
            "CPU [0%@729,1%@729,0%@729,0%@729,4%@2201,0%@2201,0%@2201,2%@2201,0%@729,0%@729,0%@729,0%@729] "
            "EMC_FREQ 0%@3199 GR3D_FREQ 87%@[1300,1300] NVENC off NVDEC off NVJPG off NVJPG1 off VIC off OFA off "
            "NVDLA0 off NVDLA1 off PVA0_FREQ off APE 174 cpu@45.937C soc2@42.5C soc0@43.75C gpu@52.031C "
            "tj@52.031C soc1@42.625C cv0@-256C VDD_GPU_SOC 14794mW/9112mW VDD_CPU_CV 1398mW/1201mW "
            "VIN_SYS_5V0 4422mW/4321mW VDDQ_VDD2_1V8AO 902mW/811mW")

# A capture of `tegrastats --interval 100` on an Orin Nano while a model ran (the load rising, then steady).
CAPTURE = "\n".join(
    f"12-01-2026 04:41:0{i} RAM 2790/7620MB (lfb 4x4MB) SWAP 0/3810MB (cached 0MB) "
    f"CPU [31%@1510,12%@1510,8%@1510,25%@1510,9%@1510,6%@1510] EMC_FREQ 38%@2133 GR3D_FREQ {gpu}%@[624] "
    f"VIC_FREQ 0%@115 APE 200 cpu@51.2C soc2@49.9C soc0@50.1C gpu@53.0C tj@53.0C soc1@50.0C "
    f"VDD_IN {vin}mW/{vin}mW VDD_CPU_GPU_CV 2841mW/2500mW VDD_SOC 1920mW/1900mW"
    for i, (gpu, vin) in enumerate([(45, 7000), (97, 9000), (99, 9400), (98, 9200)])) + "\n\n"

NVPMODEL_ORIN_NANO = "NV Power Mode: 15W\n0\n"
NVPMODEL_AGX = "NVPM WARN: fan mode is not set!\nNV Power Mode: MAXN\n0\n"

CLOCKS_ON = """SOC family:tegra234  Machine:NVIDIA Jetson Orin Nano Developer Kit
Online CPUs: 0-5
cpu0: Online=1 Governor=schedutil MinFreq=1510400 MaxFreq=1510400 CurrentFreq=1510400 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=1510400 MaxFreq=1510400 CurrentFreq=1510400 IdleStates: WFI=0 c7=0
cpu2: Online=1 Governor=schedutil MinFreq=1510400 MaxFreq=1510400 CurrentFreq=1510400 IdleStates: WFI=0 c7=0
cpu3: Online=1 Governor=schedutil MinFreq=1510400 MaxFreq=1510400 CurrentFreq=1510400 IdleStates: WFI=0 c7=0
cpu4: Online=1 Governor=schedutil MinFreq=1510400 MaxFreq=1510400 CurrentFreq=1510400 IdleStates: WFI=0 c7=0
cpu5: Online=1 Governor=schedutil MinFreq=1510400 MaxFreq=1510400 CurrentFreq=1510400 IdleStates: WFI=0 c7=0
GPU MinFreq=624750000 MaxFreq=624750000 CurrentFreq=624750000
EMC MinFreq=204000000 MaxFreq=2133000000 CurrentFreq=2133000000 FreqOverride=1
FAN Dynamic Speed control=active hwmon2_pwm=255
NV Power Mode: 15W
"""
CLOCKS_OFF = CLOCKS_ON.replace("MinFreq=1510400", "MinFreq=115200").replace("MinFreq=624750000", "MinFreq=306000000")


def test_orin_nano_line():
    s = parse_tegrastats(ORIN_NANO)
    assert (s.ram_used_mb, s.ram_total_mb, s.swap_used_mb, s.swap_total_mb) == (2339, 7620, 0, 3810)
    assert s.cpu_load == [2, 1, 0, 3, None, None] and s.cpu_freq_mhz == [729] * 4 + [None, None]
    assert (s.emc_load, s.emc_freq_mhz, s.gpu_load, s.gpu_freq_mhz) == (0, 2133, 0, [305])
    assert s.temperatures_c == {"cpu": 47.5, "soc2": 46.8, "soc0": 46.25, "gpu": 47.031, "tj": 47.5, "soc1": 46.468}
    assert s.rails_mw == {"VDD_IN": (4966, 4966), "VDD_CPU_GPU_CV": (483, 483), "VDD_SOC": (1451, 1451)}
    assert (s.input_source, s.input_power_mw) == ("VDD_IN", 4966)


def test_agx_orin_line_sums_rails_without_vdd_in():
    s = parse_tegrastats(AGX_ORIN)
    assert len(s.cpu_load) == 12 and s.cpu_freq_mhz[4] == 2201
    assert (s.gpu_load, s.gpu_freq_mhz) == (87, [1300, 1300])
    assert set(s.rails_mw) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}
    assert "NVENC" not in s.rails_mw and "APE" not in s.rails_mw  # unknown fields skipped
    assert "cv0" not in s.temperatures_c and s.temperatures_c["gpu"] == 52.031  # -256C: no sensor
    assert (s.input_source, s.input_power_mw) == ("sum of rails", 14794 + 1398 + 4422 + 902)


def test_older_forms():
    # r32 (Jetson Nano): shared CPU frequency after the brackets, rails without units, GR3D without brackets.
    s = parse_tegrastats("RAM 1500/3964MB (lfb 1x4MB) SWAP 0/1982MB (cached 0MB) CPU [5%,3%,off,off]@1479 "
                         "EMC_FREQ 0% GR3D_FREQ 0%@921 PLL@30C CPU@32.5C PMIC@100C GPU@30.5C "
                         "POM_5V_IN 2418/2418 POM_5V_GPU 0/0 POM_5V_CPU 331/331")
    assert s.cpu_load == [5, 3, None, None] and s.cpu_freq_mhz == [1479, 1479, None, None]
    assert s.gpu_freq_mhz == [921] and s.emc_freq_mhz is None
    assert (s.input_source, s.input_power_mw) == ("POM_5V_IN", 2418)


@pytest.mark.parametrize("line", ["", "hello world", "CPU [1%@729] VDD_IN 5000mW/5000mW", "RAM lots"])
def test_garbage_refused(line):
    with pytest.raises(EdgeSegError, match="not a tegrastats line"):
        parse_tegrastats(line)


def test_bad_cpu_entry_refused():
    with pytest.raises(EdgeSegError, match="CPU entry"):
        parse_tegrastats(ORIN_NANO.replace("2%@729", "x@729"))


def test_power_summary_of_capture():
    p = summarize_power(CAPTURE.splitlines())
    assert p.samples == 4 and p.input_source == "VDD_IN"
    assert p.mean_w == pytest.approx((7.0 + 9.0 + 9.4 + 9.2) / 4) and p.max_w == pytest.approx(9.4)
    f = p.fields(throughput_ips=86.5)
    assert f["fps_per_watt"] == pytest.approx(86.5 / p.mean_w) and f["power_source"] == "tegrastats VDD_IN"


def test_power_summary_refusals():
    with pytest.raises(EdgeSegError, match="no tegrastats samples"):
        summarize_power(["", "\n"])
    with pytest.raises(EdgeSegError, match="no power rails"):
        summarize_power([ORIN_NANO.split(" VDD_IN")[0]])


@pytest.mark.skipif(shutil.which("tegrastats") is not None, reason="tegrastats present (a Jetson)")
def test_sampler_refuses_without_tegrastats():
    with pytest.raises(EdgeSegError, match="not on PATH"):
        with PowerSampler():
            pass


@pytest.mark.skipif(shutil.which("tegrastats") is None, reason="needs a Jetson (tegrastats)")
def test_sampler_on_device():
    import time

    with PowerSampler(interval_ms=100) as p:
        time.sleep(1.0)
    assert p.summary().samples >= 3


def test_nvpmodel():
    m = parse_nvpmodel(NVPMODEL_ORIN_NANO)
    assert (m.name, m.id) == ("15W", 0)
    assert parse_nvpmodel(NVPMODEL_AGX).name == "MAXN"
    with pytest.raises(EdgeSegError, match="NV Power Mode"):
        parse_nvpmodel("nvpmodel: command not found\n")


def test_jetson_clocks():
    on = parse_jetson_clocks(CLOCKS_ON)
    assert len(on.cpus) == 6 and on.gpu == (624750000, 624750000, 624750000)
    assert on.emc == (204000000, 2133000000, 2133000000) and on.power_mode == "15W" and on.locked
    assert not parse_jetson_clocks(CLOCKS_OFF).locked
    with pytest.raises(EdgeSegError, match="jetson_clocks"):
        parse_jetson_clocks("")


@pytest.mark.parametrize("script", ["scripts/jetson/setup.sh", "scripts/jetson/bench.sh"])
def test_scripts_parse(script):
    subprocess.run(["bash", "-n", str(ROOT / script)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-S", "warning", str(ROOT / script)], check=True)


def test_bench_markdown_shows_fps_per_watt_only_when_rows_have_it():
    from edgeseg.bench import markdown
    from edgeseg.deploy.jetson import summarize_power

    machine = {"cpu": "ARMv8 Processor rev 1 (v8l)", "cores": 6, "gpu": "Orin", "torch": "2.9.1", "torch_threads": 6,
               "onnxruntime": "1.20", "onnx": "1.17", "python": "3.10", "omp_wait_policy": "PASSIVE"}
    row = {"model": "unet", "backend": "tensorrt", "precision": "fp16", "latency_ms_median": 11.6, "latency_ms_p90": 12.0,
           "speedup_vs_torch": None, "throughput_ips": 86.5, "first_run_peak_mb": None, "model_mb": 7.8,
           "agreement": None, "accuracy": None, "accuracy_metric": None}
    report = {"machine": machine, "batch": 1, "size": [512, 512], "rows": [dict(row)]}
    assert "img/s per W" not in markdown(report, "t")
    report["rows"][0].update(summarize_power(CAPTURE.splitlines()).fields(row["throughput_ips"]))
    text = markdown(report, "t")
    assert "| unet | tensorrt | fp16 | 86.50 | 8.65 | 9.40 | 10.00 |" in text


def test_merge_reports_adds_mode_and_clocks():
    from edgeseg.deploy.jetson import merge_reports

    part = {"machine": {"cpu": "arm"}, "size": [512, 512], "batch": 1, "notes": ["n"], "rows": [{"precision": "fp16"}]}
    other = dict(part, rows=[{"precision": "int8"}])
    r = merge_reports([part, other], NVPMODEL_AGX, CLOCKS_ON)
    assert [x["precision"] for x in r["rows"]] == ["fp16", "int8"] and r["size"] == [512, 512]
    assert r["notes"][0] == "n" and r["notes"].count("n") == 1
    assert "nvpmodel power mode MAXN (id 0)" in r["notes"] and any(n.startswith("jetson_clocks on") for n in r["notes"])
    r = merge_reports([part], "sudo: a password is required\n", "")
    assert "nvpmodel power mode not read" in r["notes"] and "jetson_clocks state not read" in r["notes"]
    with pytest.raises(EdgeSegError, match="no bench reports"):
        merge_reports([])


@pytest.mark.skipif(Path("/etc/nv_tegra_release").exists(), reason="a Jetson: the scripts would really run")
def test_scripts_refuse_off_jetson():
    r = subprocess.run(["bash", str(ROOT / "scripts/jetson/setup.sh")], capture_output=True, text=True)
    assert r.returncode != 0 and "not a Jetson" in r.stderr and not (ROOT / ".venv/.jetson-setup-").exists()
    if shutil.which("tegrastats") is None:
        r = subprocess.run(["bash", str(ROOT / "scripts/jetson/bench.sh"), "unet"], capture_output=True, text=True)
        assert r.returncode != 0 and "no tegrastats" in r.stderr


def test_bench_hook_is_off_unless_asked(monkeypatch):
    """cmd_bench builds the sampler (deploy/) and passes it to bench as a Probe: bench never imports deploy/."""
    from edgeseg.deploy.jetson import power_sampler_from_env

    monkeypatch.delenv("EDGESEG_POWER_INTERVAL_MS", raising=False)
    assert power_sampler_from_env() is None
    monkeypatch.setenv("EDGESEG_POWER_INTERVAL_MS", "50")
    p = power_sampler_from_env()
    assert isinstance(p, PowerSampler) and p.interval_ms == 50
    monkeypatch.setenv("EDGESEG_POWER_INTERVAL_MS", "fast")
    with pytest.raises(EdgeSegError, match="EDGESEG_POWER_INTERVAL_MS"):
        power_sampler_from_env()


def test_bench_rows_take_a_probes_fields():
    """A probe (here a stand-in for the tegrastats sampler) is entered around the timed runs; a one-variant run's row
    gets its fields, computed from that row's throughput."""
    from edgeseg.bench import measure

    class Probe:
        entered = exited = 0

        def __enter__(self):
            Probe.entered += 1
            return self

        def __exit__(self, *exc):
            Probe.exited += 1

        def fields(self, throughput_ips=None):
            return {"power_w_mean": 5.0, "fps_per_watt": throughput_ips / 5.0}

    class Session:
        backend, device = "onnxruntime", "cpu"

        def run(self, batch):
            return {}

    from edgeseg.export import default_meta
    from edgeseg.models import create

    meta = default_meta(create("unet_padded", num_classes=3, base_width=4, depth=2))
    rows, _ = measure({"onnxruntime:fp32": Session()}, {}, meta, np.zeros((1, 3, 8, 8), np.float32), 1, 3, probe=Probe())
    (row,) = rows
    assert Probe.entered == Probe.exited == 1
    assert row["power_w_mean"] == 5.0 and row["fps_per_watt"] == pytest.approx(row["throughput_ips"] / 5.0)
