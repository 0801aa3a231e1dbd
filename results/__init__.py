"""Results of the studies: their files, summaries, figures and the generated report.

Nothing here measures, and nothing here imports the measuring code (:mod:`stress`):

- :mod:`results.files`: names, columns and reading/writing of ``<study>.csv/json``.
- :mod:`results.histogram`: HDR histograms, encoded in the files and merged across
  processes and repeats.
- :mod:`results.limits`: the thresholds behind every flag and verdict.
- :mod:`results.bottleneck`: what limited a run, from its processes' CPU.
- :mod:`results.tables`: repeats combined (merged histograms), text and Markdown tables.
- :mod:`results.plots`: the figures, from summaries only.
- :mod:`results.profiles`: what the report shows of a middleware (its backend's profile).
- :mod:`results.data`, :mod:`results.report`, :mod:`results.stress_report`,
  :mod:`results.speedup_report`: ``REPORT.md`` and the printed summary.
- :mod:`results.cli`: ``python -m results all`` runs the whole comparison (each study as
  its own ``python -m`` process); ``python -m results report <dir>`` redraws everything
  from the files.
"""
