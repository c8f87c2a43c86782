"""One module per lesson kind; a lesson's ``kind:`` in params.yaml names the module.

``dvc.yaml`` makes ``train@<lesson>`` depend on ``lessonflow/kinds/<kind>.py``, so
editing one kind rebuilds only the lessons of that kind.
"""
