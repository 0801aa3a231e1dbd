"""Results of the studies: their files, summaries, figures and the generated report.

- :mod:`results.files`: names, columns and reading/writing of ``<study>.csv/json``.
- :mod:`results.tables`: repeats combined (merged histograms), text and Markdown tables.
- :mod:`results.plots`: the figures, from summaries only.
- :mod:`results.report`: ``REPORT.md`` and the printed summary.
- :mod:`results.cli`: ``python -m results all`` runs the whole comparison;
  ``python -m results report <dir>`` redraws everything from the files.
"""
