"""Profile a few optimizer steps of any HF/ms-swift Trainer run, from outside it.

    GWQ_PROFILE=OUTDIR[:START[:STOP]] PYTHONPATH=bench/profile_hook gwq-align sft ...
    GWQ_PROFILE_STACK=0 ...   # no Python stacks: less profiler overhead, truer idle gaps
    GWQ_SYNC_DEBUG=FILE[:START[:STOP]] ...   # count host<-device syncs by caller (CUDA only)

Python imports `sitecustomize` at start-up in every process that sees this PYTHONPATH (so the
ms-swift child of gwq-align too). When GWQ_PROFILE is set, every transformers Trainer gets
gwq_profile_callback.ProfileSteps, which profiles optimizer steps START..STOP (default 10..12).
Bench-only: gwq itself never imports this.
"""

import os

if os.environ.get("GWQ_PROFILE") or os.environ.get("GWQ_SYNC_DEBUG"):
    import importlib.abc
    import importlib.util
    import sys

    class _AfterTrainerCallback(importlib.abc.MetaPathFinder):
        """Runs the patch right after transformers.trainer_callback has been executed."""

        def find_spec(self, fullname, path, target=None):
            if fullname != "transformers.trainer_callback":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(fullname)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                from gwq_profile_callback import install
                install(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _AfterTrainerCallback())
