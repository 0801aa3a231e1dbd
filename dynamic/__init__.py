"""Dynamic scaling of the RabbitMQ InsultFilter: a master that keeps
``N = ceil((B + lambda*T) / C)`` worker processes running.

- :mod:`dynamic.policy`: the formula, clamps and the stabilization window (pure).
- :mod:`dynamic.meter`: readings of the queue and the arrival rate derived from them.
- :mod:`dynamic.master`: one tick = observe, measure, decide, act, record.
- :mod:`dynamic.launcher`: the launcher interface and local worker processes.
- :mod:`dynamic.broker`, :mod:`dynamic.stats`, :mod:`dynamic.calibrate`: RabbitMQ readings,
  the reading of the filter workers' acknowledgement reports, and the measurement of one
  worker. The workers are the stock ``middlewares.rabbitmq.filter_worker``.
- :mod:`dynamic.model`, :mod:`dynamic.simulate`: the same master over a queue model.
- :mod:`dynamic.trace`, :mod:`dynamic.load`, :mod:`dynamic.record`, :mod:`dynamic.plot`:
  load profiles, the load generator, CSV records and the figure.

Entry points: ``python -m dynamic.Main`` (the master), ``python -m dynamic.TestMaster``
(a scripted load, checked for exactly-once), ``python -m dynamic.simulate``. See
docs/DYNAMIC.md.
"""
