"""Child-process probe for peak resident memory: ``python -m edgeres.runtimes.probe '{json spec}'``.

Loads one artifact in one runtime, runs it, and prints ``{"peak_rss_mb": ...}`` as its last line.
"""

from __future__ import annotations

import json
import sys


def main(argv=None) -> int:
    import numpy as np

    from edgeres.runtimes import load_runtime

    spec = json.loads((argv or sys.argv[1:])[0])
    from edgeres_deploy.metrics import peak_rss_mb

    x = np.random.default_rng(0).standard_normal(spec["shape"]).astype(np.float32)
    with load_runtime(spec["runtime"], spec["artifact"], threads=spec.get("threads"), **spec.get("options", {})) as rt:
        for _ in range(int(spec.get("runs", 10))):
            rt.run(x)
        rt.sync()
        gpu = rt.gpu_mem_mb()
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "gpu_mem_mb": gpu}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
