"""The callback behind bench/profile_hook/sitecustomize.py: where does a training step's time go?

Writes to OUTDIR (from GWQ_PROFILE=OUTDIR[:START[:STOP]]):
  summary.json      wall time of the profiled steps, GPU busy time (union of kernel intervals),
                    the largest GPU idle gaps with the CPU ops that ran during them, and every
                    host<-device sync (aten::item / nonzero / cudaStreamSynchronize ...) with its
                    Python caller
  cpu_ops.txt       top CPU ops by self time
  cuda_kernels.txt  top CUDA kernels by time
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

SYNC_OPS = ("aten::_local_scalar_dense", "aten::nonzero", "cudaStreamSynchronize", "cudaDeviceSynchronize",
            "cudaMemcpy", "aten::is_nonzero")


def _spec():
    out, *rest = os.environ["GWQ_PROFILE"].split(":")
    start = int(rest[0]) if rest else 10
    stop = int(rest[1]) if len(rest) > 1 else start + 2
    return Path(out), start, stop


def _python_caller(event) -> str:
    """The nearest Python frames above an op (with_stack records them as parent events)."""
    frames = []
    while event is not None and len(frames) < 3:
        if ".py(" in event.name and "torch/" not in event.name and "contextlib" not in event.name:
            frames.append(event.name.split("site-packages/")[-1])
        event = event.cpu_parent
    return " <- ".join(frames) or "?"


def summarize(prof, wall_s: float, out: Path) -> dict:
    import torch

    events = list(prof.events())
    device = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    spans = sorted((e.time_range.start, e.time_range.end) for e in device)
    busy, gaps, cur_s, cur_e = 0.0, [], None, None
    for s, e in spans:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
                gaps.append((s - cur_e, cur_e, s))
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        busy += cur_e - cur_s
    cpu = [e for e in events if e.device_type == torch.autograd.DeviceType.CPU]
    top_gaps = []
    for length, s, e in sorted(gaps, reverse=True)[:15]:
        during = Counter(c.name for c in cpu if c.time_range.start < e and c.time_range.end > s
                         and (c.time_range.end - c.time_range.start) < 0.9 * (wall_s * 1e6))
        top_gaps.append({"idle_ms": round(length / 1e3, 2), "cpu_ops": during.most_common(6)})
    syncs = Counter()
    for c in cpu:
        if c.name in SYNC_OPS or c.name.startswith("cudaMemcpy"):
            syncs[(c.name, _python_caller(c))] += 1
    gpu_span = (spans[-1][1] - spans[0][0]) / 1e3 if spans else 0.0
    summary = {
        "wall_ms": round(wall_s * 1e3, 1), "gpu_busy_ms": round(busy / 1e3, 1),
        "gpu_busy_fraction": round(busy / 1e3 / (wall_s * 1e3), 3) if wall_s else None,
        "gpu_span_ms": round(gpu_span, 1), "kernels": len(device),
        "idle_gaps_total_ms": round(sum(g[0] for g in gaps) / 1e3, 1), "idle_gaps_over_1ms": sum(g[0] > 1e3 for g in gaps),
        "largest_gaps": top_gaps,
        "syncs": [{"op": k[0], "caller": k[1], "count": n} for k, n in syncs.most_common(25)],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "cpu_ops.txt").write_text(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40))
    (out / "cuda_kernels.txt").write_text(prof.key_averages().table(sort_by="self_device_time_total", row_limit=40))
    return summary


def install(trainer_callback) -> None:
    out, start, stop = _spec()

    class ProfileSteps(trainer_callback.TrainerCallback):
        def __init__(self):
            self.prof = None
            self.t0 = 0.0

        def on_step_begin(self, args, state, control, **kw):
            import torch

            if state.global_step == start and self.prof is None and int(os.environ.get("LOCAL_RANK", "0")) == 0:
                torch.cuda.synchronize() if torch.cuda.is_available() else None
                acts = [torch.profiler.ProfilerActivity.CPU]
                if torch.cuda.is_available():
                    acts.append(torch.profiler.ProfilerActivity.CUDA)
                # Python stacks name each sync's caller but slow the CPU side down a lot, which inflates
                # the GPU's idle gaps; GWQ_PROFILE_STACK=0 for truer gap sizes.
                stack = os.environ.get("GWQ_PROFILE_STACK", "1") != "0"
                self.prof = torch.profiler.profile(activities=acts, with_stack=stack)
                self.prof.__enter__()
                self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            import torch

            if self.prof is not None and state.global_step == stop:
                torch.cuda.synchronize() if torch.cuda.is_available() else None
                wall = time.perf_counter() - self.t0
                self.prof.__exit__(None, None, None)
                out.mkdir(parents=True, exist_ok=True)
                s = summarize(self.prof, wall, out)
                print(f"[gwq-profile] steps {start}..{stop}: wall {s['wall_ms']} ms, GPU busy {s['gpu_busy_ms']} ms "
                      f"({s['gpu_busy_fraction']}), syncs {sum(x['count'] for x in s['syncs'])} -> {out}", flush=True)
                self.prof = None

    original = trainer_callback.CallbackHandler.__init__

    def init(self, callbacks, *a, **kw):
        original(self, list(callbacks) + [ProfileSteps()], *a, **kw)

    trainer_callback.CallbackHandler.__init__ = init
