"""Helpers shared by the notebooks and the book, so each notebook stays a few thin cells (``from catlib import
report as R``). One module per job; every name below is importable from ``catlib.report`` itself.

* :mod:`.session`: :func:`setup` (threads, quiet progress bars, plot style) and :func:`load` (a benchmark from a
  notebook's parameters: ``benchmark``, ``tasks``, ``device``, ``checkpoint_root``, ``data_root``).
* :mod:`.cache`: a disk cache of accuracies (:class:`ResultCache`), keyed by the benchmark's identity (the tiny
  zoo's manifest, or a fingerprint of a real benchmark's weights), a fingerprint of catlib's code, the method, its
  full hyperparameters (defaults filled in), the merged tasks, the evaluated tasks, the split and, for
  data-dependent methods only, the exemplar count and seed. Every entry stores its full key and is checked against
  it (and for well-formed values) before use; a bad entry is recomputed. Notebooks share work through it: Table 10
  and the claims reuse Table 1's runs, the ablation's full-CAT row is Table 1's CAT, and so on.
* :mod:`.runs`: :func:`run` (merge + evaluate one configuration, cached), :func:`references` (Pretrained /
  Individual / MTL); :mod:`.tuning`: the book's grids and :func:`tune` (validation-tuned, the protocol of
  :func:`catlib.experiment.tune`, with every grid point cached).
* :mod:`.tables` (paper tables from ``data/paper/*.csv``, side-by-side comparisons), :mod:`.plots`,
  :mod:`.results` (:func:`save_results` / :func:`load_results`, ``notebooks/results/<name>.json``, written
  atomically), :mod:`.paper_claims` (the paper's claims checked against the results files), :mod:`.conflicts` and
  :mod:`.awd_pages` (the knowledge-conflict and AWD pages), :mod:`.timing` (Table 9's merge cost).

Environment variables: ``CATLIB_REPORT_CACHE`` (cache folder; default ``<repo>/.cache/report``; ``off`` disables
it), ``CATLIB_RESULTS_DIR`` (where results JSON files go; default ``<repo>/notebooks/results``).
"""
from ..experiment import DISPLAY, GRIDS, REFERENCE  # noqa: F401  (the notebooks' display names and grids)
from .awd_pages import awd_alone, awd_summary  # noqa: F401
from .cache import (CACHE, CACHE_VERSION, ResultCache, bench_fingerprint, code_fingerprint,  # noqa: F401
                    fingerprinted_files)
from .paper_claims import claims, claims_markdown  # noqa: F401
from .conflicts import (bench_tasks, bound_frames, bound_rows, bound_summary, conflict_key,  # noqa: F401
                        conflict_matrices, consecutive_pairs, eval_batches, pair_grids, scaled, trimmed_vectors)
from .plots import average_bars, category_plot, heatmap, line_plot  # noqa: F401
from .results import load_results, results_dir, save_results  # noqa: F401
from .runs import (awd_result, full_hparams, merged, pretrained_row, references, run, run_key,  # noqa: F401
                   run_state)
from .session import ANALOGUE, PAPER_DIR, PAPER_TASK, REPO, load, setup, task_label  # noqa: F401
from .tables import (alpha_robustness, balance_table, chosen_table, drop_std, gains_table, matrix_frame,  # noqa: F401
                     mean_std, md, ours_table, paper_table, paper_tables, printed_average_check, ranking_summary,
                     side_by_side)
from .timing import time_merge  # noqa: F401
from .tuning import (BOOK_ALPHAS, BOOK_GRIDS, BOOK_SCALES, METHODS, NEWER_METHODS, default_subset,  # noqa: F401
                     edge_choices, grid, grid_size, grids_table, tune, tune_over_seeds)
