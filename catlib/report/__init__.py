"""Views for the notebooks and the book, over results of the protocol (:class:`catlib.protocol.Session`): each
notebook stays a few thin cells (``from catlib import report as R``). No module state: what is reused lives in the
Session. One module per job; every name below is importable from ``catlib.report`` itself.

* :mod:`.notebook`: :func:`setup` (threads, quiet progress bars, plot style) and :func:`load` (a benchmark from a
  notebook's parameters); :func:`session` opens the :class:`~catlib.protocol.Session` a notebook runs in.
* :mod:`.names` (display names in the paper's order, the tiny tasks' analogues), :mod:`.tuning` (the book's
  methods and grids, tables about grids and choices), :mod:`.tables` (our rows, the paper's tables from
  ``data/paper/*.csv``, side-by-side comparisons), :mod:`.plots`, :mod:`.results` (``notebooks/results/<name>.json``,
  written atomically), :mod:`.paper_claims` (the paper's claims checked against the results files),
  :mod:`.conflicts`, :mod:`.awd_pages`, :mod:`.premise_pages` and :mod:`.text_pages` (the knowledge-conflict, AWD,
  premise and Tables 3 and 4 pages),
  :mod:`.timing` (Table 9).
* :mod:`.legacy`: the deprecated pre-Session helpers (``run(bench, ...)``, ``tune(bench, ...)``, ...).

Environment variables: ``CATLIB_REPORT_CACHE`` (the result cache's folder; default ``<repo>/.cache/report``;
``off`` disables it), ``CATLIB_RESULTS_DIR`` (where results JSON files go; default ``<repo>/notebooks/results``).
"""

from ..protocol import Session, display_names, mean_std  # noqa: F401
from ..protocol.cache import CACHE_VERSION, ResultCache, bench_fingerprint, code_fingerprint  # noqa: F401
from ..protocol.cache import fingerprinted_files  # noqa: F401
from ..protocol.search import WIDEN  # noqa: F401
from .awd_pages import awd_alone, awd_summary  # noqa: F401
from .conflicts import (
    bench_tasks,
    bound_frames,
    bound_rows,
    bound_summary,
    conflict_matrices,  # noqa: F401
    consecutive_pairs,
    eval_batches,
    pair_grids,
    removed_energy_table,
    scaled,
    trimmed_vectors,
)
from .legacy import (
    awd_result,
    merged,
    pretrained_row,
    references,
    run,
    run_state,
    tune,  # noqa: F401
    tune_over_seeds,
)
from .names import ANALOGUE, DISPLAY, ORDER, PAPER_MODEL, PAPER_TASK, REFERENCE, task_label  # noqa: F401
from .paper_claims import (  # noqa: F401
    bottom_line,
    bottom_line_block,
    bottom_line_markdown,
    bottom_line_summary,
    claims,
    claims_markdown,
    page_verdicts,
)
from .verdicts import MARGIN, WORDS, Effect, against_best, effect, effect_between, rule_text, verdict  # noqa: F401
from .premise_pages import (  # noqa: F401
    CLIP_LIKE,
    clip_likeness,
    diagnostics,
    merging_gaps,
    per_layer_frame,
    premise_lines,
    summary_table,
)
from .plots import average_bars, category_plot, heatmap, line_plot  # noqa: F401
from .text_pages import GLUE_ACCEPTANCE, VL_ACCEPTANCE, glue_acceptance, metric_labels, paper_columns  # noqa: F401
from .text_pages import paper_in_points, vl_acceptance, vl_paper_columns, wins  # noqa: F401
from .results import DASH, load_results, results_dir, save_figure, save_results, show_table  # noqa: F401
from .notebook import PAPER_DIR, REPO, load, seeds, session, setup  # noqa: F401
from .tables import (
    alpha_robustness,
    balance_per_seed,
    balance_table,
    chosen_table,
    drop_std,
    gains_table,
    md,
    ours_table,  # noqa: F401
    paper_table,
    paper_tables,
    pm,
    printed_average_check,
    ranking_summary,
    results_table,
    seed_summary,
    seeds_table,
    side_by_side,
    per_task_side_by_side,
)
from .timing import (  # noqa: F401
    fusionbench_table,
    growth_table,
    load_benchmark_json,
    per_step_cost,
    scaling_plot,
    steps_tradeoff,
    time_merge,
    time_test_time,
)
from .tuning import (
    BOOK_ALPHAS,
    BOOK_SCALES,
    METHODS,
    NEWER_METHODS,
    default_subset,
    edge_choices,  # noqa: F401
    full_hparams,
    grid,
    grid_size,
    grids_table,
    paper_cost_column,
    test_time_rows,
)


def __getattr__(name: str):  # derived on each access, no module state
    if name == "BOOK_GRIDS":
        from . import tuning

        return tuning.BOOK_GRIDS
    if name == "GRIDS":
        from ..protocol import grids

        return grids(full=True)
    if name == "CACHE":  # deprecated: the default cache folder
        return ResultCache()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
