"""Named Beam runners for ``fld annotate --runner NAME``: a registry of pipeline-option sets.

Any other Beam pipeline option given on the command line is passed through untouched, so the
same pipeline runs on Flink, Spark or Dataflow with their standard options, e.g.
``--runner flink --flink_master=localhost:8081 --environment_type=LOOPBACK``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


#: images per annotation pipeline run by default (``[runner] wave_images``): a wave's rows are
#: held until its files are written (~340 MB at FLD-5B's ~40 rows per image); one start a wave
DEFAULT_WAVE_IMAGES = 10_000


@dataclass(frozen=True)
class RunnerSpec:
    """How to run: ``options(workers, tasks)`` returns the Beam flags of this runner."""

    name: str
    help: str
    options: Callable[[int, int], list[str]]
    requires: tuple[str, str] | None = None  # (module, pip extra)


RUNNERS: dict[str, RunnerSpec] = {}


def register_runner(spec: RunnerSpec) -> RunnerSpec:
    RUNNERS[spec.name] = spec
    return spec


register_runner(RunnerSpec("direct", "Beam DirectRunner in this process (default)",
                           lambda workers, tasks: ["--runner=DirectRunner", "--direct_running_mode=in_memory"]))
register_runner(RunnerSpec(
    "direct-multiprocess", "Beam DirectRunner with --workers worker processes on this machine",
    lambda workers, tasks: ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                            f"--direct_num_workers={workers}"]))
register_runner(RunnerSpec(
    "dask", "Beam DaskRunner on a dask.distributed cluster (--dask_client_address=HOST:PORT; "
            "without it, a local cluster)",
    lambda workers, tasks: [f"--runner={DASK_RUNNER}", f"--dask_npartitions={max(1, tasks)}"],
    requires=("distributed", "dask")))
for _name, _cls in (("flink", "FlinkRunner"), ("spark", "SparkRunner"), ("dataflow", "DataflowRunner"),
                    ("portable", "PortableRunner")):
    register_runner(RunnerSpec(_name, f"Beam {_cls}; give its standard pipeline options too",
                               lambda workers, tasks, c=_cls: [f"--runner={c}"]))


def runner_options(name: str, workers: int, tasks: int, extra: list[str]) -> list[str]:
    """Beam flags for runner ``name`` plus the user's ``extra`` flags (which win on conflict)."""
    try:
        spec = RUNNERS[name]
    except KeyError:
        raise ValueError(f"unknown runner {name!r}; choose one of {', '.join(RUNNERS)}") from None
    if spec.requires and importlib.util.find_spec(spec.requires[0]) is None:
        raise ValueError(f"runner {name!r} needs {spec.requires[0]}: pip install 'fld-engine[{spec.requires[1]}]'")
    given = {flag.split("=", 1)[0] for flag in extra}
    return [flag for flag in spec.options(workers, tasks) if flag.split("=", 1)[0] not in given] + list(extra)


def run_to_completion(pipeline: Any) -> None:
    """Run a built Beam pipeline and wait for it; the Dask runner's client (which Beam never
    closes) is closed afterwards, also when the run fails or is interrupted."""
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)
        if client is not None:
            client.close()
