"""Benchmarks: models × backends × precisions at one input size.

Per variant: latency median/p90 (ms per batch), throughput, the peak memory the first run of a fresh
session adds (activations, arenas; weights are the model size), model file size,
argmax agreement with PyTorch, and mIoU where a data set is given. The variants of one model are
timed round-robin in one process (one run of each per round), so they share the machine's state
and their ratios are fair; OMP_WAIT_POLICY=PASSIVE and ORT's allow_spinning=0 keep one backend's
idle threads from stealing the cores of the next (see DESIGN.md's timing rules). GPU variants (tensorrt,
torch-cuda*) wait for the device inside each timed call. With ``profile`` each variant's per-layer time is
measured after the timed runs, in a pass of its own (``profile_variant``); with ``stages`` an instance or panoptic
graph's time stage by stage, each stage cut out of the graph and timed alongside the whole (``stage_times``).

One module per job: ``variants`` (files and sessions), ``timing`` (rounds, load, machine, the ``Probe`` interface),
``profile`` (per-layer profiles, stages by graph cuts), ``accuracy``, ``report`` (markdown, JSON, plots) and ``run``
(the harness that joins them: ``bench_files``, ``run_bench``, ...). This package imports no ``deploy/`` module: a
probe such as Jetson's power sampler is passed in.
"""
from edgeseg.bench.accuracy import accuracy, agreement, predictions
from edgeseg.bench.profile import (PROFILE_TOP, STAGE_CUTS, instance_stage_cuts, module_stage_times, panoptic_stage_cuts,
                                   profile_variant, split_stages, stage_times, stages_missing)
from edgeseg.bench.report import (goal_lines, load_note, machine_line, markdown, profile_markdown, stages_markdown, table,
                                  write_json_markdown, write_report)
from edgeseg.bench.run import (ENGINE_SUFFIXES, bench_checkpoints, bench_files, bench_model, measure, measure_each,
                               run_bench, zoo_model)
from edgeseg.bench.timing import (Probe, first_run_peak_mb, loadavg, machine, set_timing_environment, sgemm_gflops,
                                  summarize, time_callables, time_round_robin)
from edgeseg.bench.variants import (BENCH_BACKENDS, DEFAULT_VARIANTS, TORCH_BACKENDS, build_variants,
                                    open_torch_variant, parse_variant, runnable_variants, tensorrt_missing,
                                    variant_file, variant_missing)

__all__ = ["BENCH_BACKENDS", "DEFAULT_VARIANTS", "ENGINE_SUFFIXES", "PROFILE_TOP", "Probe", "STAGE_CUTS",
           "TORCH_BACKENDS", "accuracy", "agreement", "bench_checkpoints", "bench_files", "bench_model",
           "build_variants", "first_run_peak_mb", "goal_lines", "instance_stage_cuts", "load_note", "loadavg",
           "machine", "machine_line", "markdown", "measure", "measure_each", "module_stage_times",
           "open_torch_variant", "panoptic_stage_cuts", "parse_variant", "predictions", "profile_markdown",
           "profile_variant", "run_bench", "runnable_variants", "set_timing_environment", "sgemm_gflops", "split_stages",
           "stage_times", "stages_markdown", "stages_missing", "summarize", "table", "tensorrt_missing",
           "time_callables", "time_round_robin", "variant_file", "variant_missing", "write_json_markdown",
           "write_report", "zoo_model"]
