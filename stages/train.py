from lessonflow.lessons import LessonRun, train_lesson
from stages import run_stage


def train(lesson_id, params, layout):
    """Train one lesson's model (resuming from its checkpoint when params, data and code are unchanged)."""
    train_lesson(LessonRun(lesson_id, params, layout))


if __name__ == "__main__":
    run_stage("train", "lessons", train)
