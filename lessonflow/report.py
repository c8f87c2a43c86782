"""The page a person opens instead of reading metrics files: ``reports/report.html`` and ``report.md``.

Generic over lesson kinds: it shows whatever a lesson left in ``results/<id>/`` — the scalar
results of its ``eval/metrics.json``, every PNG it logged, and the per-epoch DVCLive curves
(drawn here, so no kind has to). The HTML embeds its images, so it opens offline as one file;
the Markdown links copies of them in ``reports/images/``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from lessonflow.atomic import atomic_dir
from lessonflow.cards import card_fields, render_card
from lessonflow.compare import TOLERANCE, Comparison, compare, headline, read_metrics, table, verdict
from lessonflow.compare import headers as change_headers
from lessonflow.compare import rows as change_rows
from lessonflow.ensemble import table_rows
from lessonflow import figures
from lessonflow.figures import plt, training_curves
from lessonflow.history import Point, history
from lessonflow.loader import build
from lessonflow.paths import PLOTS, Layout
from lessonflow.seeds import KEY as SEEDS_KEY

# A lesson that logs an image per epoch (a GAN's samples) shows its first and last ones only.
FIRST_IMAGES, LAST_IMAGES = 2, 6
IMAGES = "images"
CURVES, CURVES_KEY = "curves.png", "curves.key"
CARDS = "cards"


@dataclass
class LessonResult:
    lesson_id: str
    kind: str
    dataset: str
    reference: str
    reference_accuracy: float | None
    metrics: dict[str, Any]
    facts: dict[str, Any]  # device, data source, training time: from eval metrics, else train metrics
    trained: dict[str, Any] = field(default_factory=dict)  # the train log's summary: environment, model facts
    beyond_tutorial: bool = False
    images: list[Path] = field(default_factory=list)  # under reports/images/, curves first
    images_left_out: int = 0

    @property
    def built(self) -> bool:
        return bool(self.metrics)

    @property
    def headline(self) -> tuple[str, float] | None:
        return headline(self.metrics)

    @property
    def source(self) -> str:
        """Where the lesson comes from, in the words the report puts before its reference result."""
        return "beyond the tutorial, measured against" if self.beyond_tutorial else "tutorial:"

    @property
    def verdict(self) -> str:
        return verdict(self.headline, self.reference_accuracy, self.facts.get("data_source"), self.metrics.get(SEEDS_KEY))


def read_curves(lesson_dir: Path) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """DVCLive's per-step TSVs (``*/plots/metrics/<split>/<metric>.tsv``) grouped by metric, one line per split."""
    panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for metrics_dir in sorted(lesson_dir.glob(f"*/{PLOTS}/metrics")):
        for tsv in sorted(metrics_dir.rglob("*.tsv")):
            frame = pd.read_csv(tsv, sep="\t")
            if frame.empty:
                continue
            steps = frame["step"] if "step" in frame else frame.index
            split = "/".join(tsv.relative_to(metrics_dir).parent.parts) or tsv.stem
            panels.setdefault(tsv.stem, {})[split] = (list(steps), list(frame[frame.columns[-1]]))
    return panels


def curves_key(lesson_id: str, lesson_dir: Path) -> str:
    """What a lesson's curve figure is drawn from: its curve files and the code and matplotlib that draw it."""
    digest = hashlib.md5(f"{lesson_id} matplotlib {figures.matplotlib.__version__}".encode())
    for source in (Path(__file__), Path(figures.__file__)):
        digest.update(source.read_bytes())
    for tsv in sorted(lesson_dir.glob(f"*/{PLOTS}/metrics/**/*.tsv")):
        digest.update(tsv.relative_to(lesson_dir).as_posix().encode() + b"\0" + tsv.read_bytes())
    return digest.hexdigest()


def draw_curves(lesson_id: str, lesson_dir: Path, target: Path, previous: Path) -> Path | None:
    """Draw the per-epoch curves, or copy the last report's figure when it was drawn from the same inputs:
    drawing every lesson's is most of the report's own time, and an edit changes one lesson's."""
    key = curves_key(lesson_id, lesson_dir)
    drawn = target / CURVES
    if (previous / CURVES).is_file() and (previous / CURVES_KEY).is_file() and (previous / CURVES_KEY).read_text() == key:
        if (previous / CURVES).resolve() != drawn.resolve():
            shutil.copyfile(previous / CURVES, drawn)
    else:
        panels = read_curves(lesson_dir)
        if not panels:
            return None
        figure = training_curves(panels, f"{lesson_id}: per-epoch curves")
        figure.savefig(drawn)
        plt.close(figure)
    (target / CURVES_KEY).write_text(key)
    return drawn


def collect_lesson(lesson_id: str, lesson: Any, layout: Layout, images_dir: Path) -> LessonResult:
    """Read one lesson's results and copy (or draw) its pictures into ``images_dir``."""
    metrics = read_metrics(layout.eval_log(lesson_id) / "metrics.json")
    trained = read_metrics(layout.train_log(lesson_id) / "metrics.json")
    facts = {key: metrics.get(key, trained.get(key)) for key in ("data_source", "device", "train_seconds", "epochs")}
    result = LessonResult(lesson_id, lesson.kind, lesson.dataset, lesson.reference, lesson.reference_accuracy,
                          metrics, facts, trained, beyond_tutorial=lesson.beyond_tutorial)
    lesson_dir = layout.results / lesson_id
    target = images_dir / lesson_id
    target.mkdir(parents=True, exist_ok=True)
    curves = draw_curves(lesson_id, lesson_dir, target, layout.reports / IMAGES / lesson_id)
    if curves:
        result.images.append(curves)
    logged = sorted(lesson_dir.rglob("*.png"))
    if len(logged) > FIRST_IMAGES + LAST_IMAGES:
        result.images_left_out = len(logged) - FIRST_IMAGES - LAST_IMAGES
        logged = logged[:FIRST_IMAGES] + logged[-LAST_IMAGES:]
    for image in logged:  # eval/plots/images/confusion_matrix.png -> eval-confusion_matrix.png
        parts = [part for part in image.relative_to(lesson_dir).parts if part not in (PLOTS, IMAGES)]
        copy = target / "-".join(parts)
        shutil.copyfile(image, copy)
        result.images.append(copy)
    return result


@dataclass
class EnsembleResult:
    name: str
    metrics: dict[str, Any]
    chart: Path | None


def collect_ensemble(name: str, layout: Layout, images_dir: Path) -> EnsembleResult:
    log = layout.ensemble_log(name)
    chart = log / PLOTS / IMAGES / "accuracy.png"
    copy = None
    if chart.is_file():
        copy = images_dir / f"ensemble-{name}.png"
        shutil.copyfile(chart, copy)
    return EnsembleResult(name, read_metrics(log / "metrics.json"), copy)


# --- rendering -------------------------------------------------------------------------------------

def _pct(value: Any) -> str:
    return f"{value:.2%}" if isinstance(value, (int, float)) else "—"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def _result(lesson: LessonResult) -> str:
    chosen = lesson.headline
    if chosen is None:
        return "not built"
    metric, value = chosen
    text = f"{_pct(value)} {metric}" if "accuracy" in metric else f"{value:.4g} {metric}"
    return text + _over_seeds(lesson.metrics, _pct if "accuracy" in metric else _value)


def _over_seeds(metrics: dict[str, Any], shown) -> str:
    """A result's or a training time's mean ± spread, after its first seed's value; nothing for one seed."""
    block = metrics.get(SEEDS_KEY)
    return f"; {block['seeds']} seeds: mean {shown(block['mean'])} ± {shown(block['std'])}" if block else ""


def _seconds(value: Any) -> str:
    return f"{value:.1f} s" if isinstance(value, (int, float)) else "—"


def summary_rows(lessons: list[LessonResult]) -> list[list[str]]:
    return [[lesson.lesson_id + (" (beyond the tutorial)" if lesson.beyond_tutorial else ""), lesson.kind,
             f"{lesson.dataset} ({_value(lesson.facts['data_source'])})",
             _result(lesson), f"{_pct(lesson.reference_accuracy)} ({lesson.reference})"
             if lesson.reference_accuracy is not None else lesson.reference,
             lesson.verdict, _value(lesson.facts["device"]),
             _seconds(lesson.facts["train_seconds"]) + _over_seeds(lesson.trained, _seconds)] for lesson in lessons]


SUMMARY_HEADERS = ["lesson", "kind", "data (source)", "our result", "tutorial", "verdict", "device", "training time"]


def metric_rows(metrics: dict[str, Any]) -> list[list[str]]:
    return [[key, _value(value)] for key, value in metrics.items() if not isinstance(value, (dict, list))]


def ensemble_rows(ensemble: EnsembleResult) -> list[list[str]]:
    return [[what, name, _pct(value), weight] for what, name, value, weight in table_rows(ensemble.metrics)]


ENSEMBLE_HEADERS = ["", "model", "test accuracy", "weight (fitted on validation)"]


@dataclass
class Trends:
    """The report's history section: small multiples of each lesson's headline metric, and their x axis."""

    chart: Path | None
    revisions: list[list[str]]  # number on the x axis, revision, date
    note: str = ""


@dataclass
class Report:
    lessons: list[LessonResult]
    ensembles: list[EnsembleResult]
    changes: Comparison
    profile: str
    trends: Trends


def intro(profile: str) -> str:
    return (f"Profile: {profile}. A verdict compares our test accuracy with the tutorial's: within "
            f"{TOLERANCE * 100:.1f} percentage points it matches. A lesson trained with several seeds is judged by "
            "the t interval of their mean: beats, matches or falls short when the whole interval says so, "
            "inconclusive when it straddles a bound of the tolerance; a lesson with one seed says so. A result on "
            "the embedded sample data says so: the tutorial measured on the real dataset.")


def _md_image(path: Path, root: Path) -> str:
    return f"![{path.stem}]({path.relative_to(root).as_posix()})"


def render_markdown(report: Report, root: Path) -> str:
    out = ["# lessonflow report", "", intro(report.profile), "",
           "## Lessons", "", tabulate(summary_rows(report.lessons), SUMMARY_HEADERS, tablefmt="github"), ""]
    out += ["## Ensembles", ""]
    for ensemble in report.ensembles:
        out += [f"### ensemble-{ensemble.name}", ""]
        if not ensemble.metrics:
            out += ["not built", ""]
            continue
        out += [tabulate(ensemble_rows(ensemble), ENSEMBLE_HEADERS, tablefmt="github", disable_numparse=True), ""]
        out += [_md_image(ensemble.chart, root), ""] if ensemble.chart else []
    out += [f"## Since {report.changes.rev_a}", "", f"Headline metrics, {report.changes.rev_a} → this build.", "",
            table(report.changes, markdown=True), "## Trends", "", TRENDS_INTRO, ""]
    trends = report.trends
    out += [_md_image(trends.chart, root), "", tabulate(trends.revisions, TREND_HEADERS, tablefmt="github"), ""] \
        if trends.chart else [trends.note, ""]
    out += ["## Per lesson", ""]
    for lesson in report.lessons:
        out += [f"### {lesson.lesson_id}", "",
                f"{lesson.kind} on {lesson.dataset}; {lesson.source} {lesson.reference}. "
                f"Verdict: {lesson.verdict}. [Model card]({card_link(lesson)})", ""]
        if lesson.built:
            out += [tabulate(metric_rows(lesson.metrics), ["metric", "value"], tablefmt="github"), ""]
        out += [_md_image(image, root) for image in lesson.images]
        if lesson.images_left_out:
            out.append(f"({lesson.images_left_out} more images in results/{lesson.lesson_id}/)")
        out.append("")
    return "\n".join(out)


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td:first-child { white-space: nowrap; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.figures img { max-width: 100%; height: auto; border: 1px solid #ddd; }
section.lesson { border-top: 2px solid #ddd; margin-top: 2em; }
.note { color: #555; }
"""


def _html_table(rows: list[list[str]], headers: list[str]) -> str:
    return tabulate(rows, headers, tablefmt="html", disable_numparse=True)


def _html_image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" title="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _html_changes(changes: Comparison) -> str:
    body = _html_table(change_rows(changes), change_headers(changes)) if changes.changes else \
        "<p>No lesson metrics at either revision.</p>"
    return body + "".join(f"<p class='note'>{html.escape(problem)}</p>" for problem in changes.problems)


def render_html(report: Report) -> str:
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>lessonflow report</title>",
           f"<style>{CSS}</style></head><body><h1>lessonflow report</h1>",
           f"<p class='note'>{html.escape(intro(report.profile))}</p>",
           "<h2>Lessons</h2>", _html_table(summary_rows(report.lessons), SUMMARY_HEADERS), "<h2>Ensembles</h2>"]
    for ensemble in report.ensembles:
        out.append(f"<h3>ensemble-{html.escape(ensemble.name)}</h3>")
        if not ensemble.metrics:
            out.append("<p>not built</p>")
            continue
        out.append("<div class='figures'>" + _html_table(ensemble_rows(ensemble), ENSEMBLE_HEADERS)
                   + (_html_image(ensemble.chart) if ensemble.chart else "") + "</div>")
    out += [f"<h2>Since {html.escape(report.changes.rev_a)}</h2>",
            f"<p class='note'>Headline metrics, {html.escape(report.changes.rev_a)} → this build.</p>",
            _html_changes(report.changes), "<h2>Trends</h2>", f"<p class='note'>{html.escape(TRENDS_INTRO)}</p>"]
    trends = report.trends
    out.append("<div class='figures'>" + _html_image(trends.chart) + _html_table(trends.revisions, TREND_HEADERS)
               + "</div>" if trends.chart else f"<p>{html.escape(trends.note)}</p>")
    out.append("<h2>Per lesson</h2>")
    for lesson in report.lessons:
        name = html.escape(lesson.lesson_id)
        out += [f"<section class='lesson' id='{name}'><h3>{name}</h3>",
                f"<p>{html.escape(lesson.kind)} on {html.escape(lesson.dataset)}; {html.escape(lesson.source)} "
                f"{html.escape(lesson.reference)}. Verdict: <b>{html.escape(lesson.verdict)}</b>. "
                f"<a href='{card_link(lesson)}'>Model card</a></p>"]
        metrics = _html_table(metric_rows(lesson.metrics), ["metric", "value"]) if lesson.built else ""
        out.append("<div class='figures'>" + metrics + "".join(map(_html_image, lesson.images)) + "</div>")
        if lesson.images_left_out:
            out.append(f"<p class='note'>{lesson.images_left_out} more images in results/{name}/</p>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def card_link(lesson: LessonResult) -> str:
    return f"{CARDS}/{lesson.lesson_id}.md"


def write_cards(params: Any, lessons: list[LessonResult], root: Path) -> None:
    """``cards/<lesson>.md`` under ``root``; a torch model's architecture is drawn from its recorded shapes."""
    (root / CARDS).mkdir()
    for result in lessons:
        lesson = params.lessons[result.lesson_id]
        shapes = result.trained.get("model", {})
        module = build(lesson, shapes) if "input_shape" in shapes else None
        fields = card_fields(result.lesson_id, lesson, result.metrics, result.trained, result.headline,
                             result.verdict, module)
        (root / card_link(result)).write_text(render_card(result.lesson_id, fields))


def build_report(params: Any, layout: Layout, since: str = "HEAD") -> Path:
    """Write ``reports/`` whole or not at all: report.html, report.md, images/ and a model card per lesson."""
    with atomic_dir(layout.reports) as staging:
        images_dir = staging / IMAGES
        images_dir.mkdir()
        lessons = [collect_lesson(lesson_id, lesson, layout, images_dir)
                   for lesson_id, lesson in params.lessons.items()]
        ensembles = [collect_ensemble(name, layout, images_dir) for name in params.ensembles]
        report = Report(lessons, ensembles, compare_safely(layout.root, since), params.profile,
                        draw_trends(layout.root, images_dir))
        write_cards(params, lessons, staging)
        (staging / "report.md").write_text(render_markdown(report, staging))
        (staging / "report.html").write_text(render_html(report))
    return layout.reports / "report.html"


TREND_REVISIONS = 10
TREND_HEADERS = ["#", "revision", "date"]
TRENDS_INTRO = (f"Each lesson's headline metric over the last {TREND_REVISIONS} commits and recorded runs "
                "(`lessonflow history` prints the numbers), its first seed's, with the range of its seeds shaded "
                "where it trained several; a new line starts where the data source changed.")


def draw_trends(root: Path, images_dir: Path) -> Trends:
    """Lessons with a result at two revisions or more, one small panel each; a note when there are none."""
    from subprocess import CalledProcessError

    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    try:
        points = history(root, TREND_REVISIONS)
    except (DvcException, SCMError, CalledProcessError) as err:
        return Trends(None, [], f"No history: {err}")
    series = {lesson: found for lesson, found in points.items() if len(found) > 1}
    if not series:
        return Trends(None, [], "No lesson has results at two revisions yet: commit a build's dvc.lock and "
                                "results/, or let the flow record its runs.")
    figure, number = trend_figure(series)
    chart = images_dir / "trends.png"
    figure.savefig(chart)
    plt.close(figure)
    return Trends(chart, [[str(index), rev.label, rev.date.strftime("%Y-%m-%d %H:%M")] for rev, index in number.items()])


def trend_figure(series: dict[str, list[Point]]):
    """The small multiples, one line per data source, each revision's seeds' range shaded around it; and the
    number each revision has on the x axis, oldest first."""
    order = sorted({point.revision for found in series.values() for point in found}, key=lambda rev: rev.date)
    number = {revision: index for index, revision in enumerate(order, 1)}
    panels: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    bands: dict[str, dict[str, tuple[list, list, list]]] = {}
    for lesson, found in series.items():
        panel = f"{lesson}: {found[-1].metric}"
        lines = panels.setdefault(panel, {})
        for point in found:
            line = point.data_source or "?"
            steps, values = lines.setdefault(line, ([], []))
            steps.append(number[point.revision])
            values.append(point.value)
            if point.spread:
                band = bands.setdefault(panel, {}).setdefault(line, ([], [], []))
                for column, value in zip(band, (number[point.revision], *point.spread)):
                    column.append(value)
    return training_curves(panels, "Headline metric per revision", columns=4, xlabel="revision (table beside)",
                           bands=bands), number


def compare_safely(root: Path, since: str) -> Comparison:
    """The "since the last commit" section is informative only: a project outside git still gets its report."""
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    try:
        return compare(since, root=root)
    except (DvcException, SCMError) as err:
        return Comparison(since, "workspace", [], [f"no comparison: {err}"])
