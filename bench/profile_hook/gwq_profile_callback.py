"""The callbacks behind bench/profile_hook/sitecustomize.py: where does a training step's time go?

GWQ_SYNC_DEBUG=FILE[:START[:STOP]]: every host<-device sync torch reports in optimizer steps
START..STOP (torch.cuda.set_sync_debug_mode("warn")), counted by Python caller, written to FILE.

GWQ_PROFILE writes to OUTDIR (from GWQ_PROFILE=OUTDIR[:START[:STOP]]):
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


def _spec(var: str = "GWQ_PROFILE"):
    out, *rest = os.environ[var].split(":")
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


def profile_callback(trainer_callback):
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

    return ProfileSteps()


def sync_debug_callback(trainer_callback):
    import threading
    import traceback
    import warnings

    out, start, stop = _spec("GWQ_SYNC_DEBUG")
    counts: Counter = Counter()

    class SyncDebug(trainer_callback.TrainerCallback):
        """torch warns at each sync while the mode is on; we count them by their nearest non-torch callers."""

        def __init__(self):
            self.on = False
            self.show = None
            self.filters = None

        def record(self, message, category, *a, **kw):
            if "synchroniz" not in str(message):
                return self.show(message, category, *a, **kw)
            frames = [f for f in traceback.extract_stack()[:-2] if "site-packages/torch/" not in f.filename
                      and "warnings.py" not in f.filename and "gwq_profile_callback" not in f.filename][-3:]
            where = " <- ".join(f"{f.filename.split('site-packages/')[-1]}:{f.lineno} {f.name}" for f in reversed(frames))
            counts[(str(message).split(".")[0][:60], where or threading.current_thread().name)] += 1

        def on_step_begin(self, args, state, control, **kw):
            import torch

            if state.global_step == start and not self.on and torch.cuda.is_available():
                self.on, self.show, self.filters = True, warnings.showwarning, warnings.filters[:]
                warnings.simplefilter("always")  # every occurrence, not only the first per caller
                warnings.showwarning = self.record
                torch.cuda.set_sync_debug_mode("warn")

        def on_step_end(self, args, state, control, **kw):
            import torch

            if self.on and state.global_step == stop:
                torch.cuda.set_sync_debug_mode("default")
                warnings.showwarning, self.on = self.show, False
                warnings.filters[:] = self.filters
                steps = stop - start  # on_step_begin sees the steps done so far: steps start+1..stop ran
                lines = [f"# host<-device syncs in optimizer steps {start + 1}..{stop} ({steps} steps), by caller"]
                lines += [f"{n:6d}  {msg} @ {where}" for (msg, where), n in counts.most_common()]
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text("\n".join(lines) + "\n")
                print(f"[gwq-sync-debug] {sum(counts.values())} syncs in {steps} steps -> {out}", flush=True)

    return SyncDebug()


def install(trainer_callback) -> None:
    extra = []
    if os.environ.get("GWQ_PROFILE"):
        extra.append(profile_callback(trainer_callback))
    if os.environ.get("GWQ_SYNC_DEBUG"):
        extra.append(sync_debug_callback(trainer_callback))
    original = trainer_callback.CallbackHandler.__init__

    def init(self, callbacks, *a, **kw):
        original(self, list(callbacks) + extra, *a, **kw)

    trainer_callback.CallbackHandler.__init__ = init
