import json

from lessonflow.lessons import LessonRun, evaluate_lesson
from stages import run_stage


def evaluate(lesson_id, params, layout):
    """Score one trained lesson on the held-out test split and write its metrics and plots."""
    metrics = evaluate_lesson(LessonRun(lesson_id, params, layout))
    print(f"evaluate@{lesson_id}: {json.dumps(metrics)}")


if __name__ == "__main__":
    run_stage("evaluate", "lessons", evaluate)
