"""The stress harness and the measurement code every study shares.

- :mod:`stress.workload`: what clients send and how replies are checked.
- :mod:`stress.loadgen`: the client process loop (closed, pipelined, open loop).
- :mod:`stress.sampler`: CPU and memory of services, clients and brokers.
- :mod:`stress.plan`: one cell of a study (middleware, workload, clients, nodes).
- :mod:`stress.runner`: one run, from deployment to tidy row, cleaned up whatever happens.
- :mod:`stress.rows`: a run's row, its flags, and the flags of repeats that disagree.
- :mod:`stress.study`: many runs with progress, incremental files and clean stops.
- :mod:`stress.calibrate`: how fast the load generator itself is.
- :mod:`stress.cli`: ``python -m stress``.

Result files, histograms, the thresholds of every flag and the report are the
:mod:`results` package's; this package measures and writes through it.
"""
