"""``report.html``: one self-contained file that shows what a run learnt and where it fails.

The report reads only the run folder (paths from :class:`stetho.runs.folder.RunFolder`), so
any finished run can be re-reported (``stetho report RUN_DIR``); the audio of the
worst-classified recordings is read from the paths in the out-of-fold predictions when they
still exist. Everything is embedded: figures as PNG data URIs, audio as 16-bit PCM WAV data
URIs, styles inline; the page loads nothing from anywhere, so it can be e-mailed or archived
as is.

Sections (:data:`stetho.report.sections.SECTIONS`): summary, warnings, configuration, data,
metrics (per fold and pooled), ROC curves, precision-recall curves, confusion matrix,
calibration, learning curves, metrics per source (with a warning for every class that only one
source has), the worst-classified validation recordings (audio player, spectrogram,
attribution maps) and the environment.

Modules: :mod:`~stetho.report.page` (assembles and writes the page from
``templates/page.html`` and ``templates/report.css``), :mod:`~stetho.report.sections` (one
function per section), :mod:`~stetho.report.plots` (the charts), :mod:`~stetho.report.audio`
(audio as data URIs), :mod:`~stetho.report.inputs` (what is read from the run folder) and
:mod:`~stetho.report.markup` (small HTML helpers).
"""

from stetho.report.audio import AUDIO_RATE_HZ, MAX_AUDIO_S, wav_data_uri
from stetho.report.page import DEFAULT_WORST, render_report, report_hook, write_report
from stetho.report.sections.sources import single_source_classes

__all__ = [
    "AUDIO_RATE_HZ",
    "DEFAULT_WORST",
    "MAX_AUDIO_S",
    "render_report",
    "report_hook",
    "single_source_classes",
    "wav_data_uri",
    "write_report",
]
