import runpy
from pathlib import Path

from huey.registry import Registry

import webhooks.worker

WORKER_FILE = Path(webhooks.worker.__file__)


def test_the_delivery_task_has_one_name_however_the_worker_is_started(make_app, tmp_path):
    app = make_app(WEBHOOK_QUEUE_PATH=str(tmp_path / "queue" / "webhooks.db"))
    # As uWSGI's mule and `python -m` run it: the file's code under another module name.
    as_script = runpy.run_path(str(WORKER_FILE), run_name="__mule__")
    started_as_script = as_script["new_worker"](app)
    imported = webhooks.worker.new_worker(app)
    names = {Registry().task_to_string(w.deliver.task_class) for w in (started_as_script, imported)}
    assert names == {"webhooks.worker.webhooks.deliver"}
