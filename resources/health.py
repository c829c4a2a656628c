"""Health checks: liveness (the process serves) and readiness (its backing services answer)."""

import logging

from flask import current_app
from flask_restful import Resource
from sqlalchemy import text

from core.errors import error_response
from core.rate_limits import rate_limits
from db import db

log = logging.getLogger("stores_api.health")


class Health(Resource):
    def get(self):
        return {"status": "ok"}, 200


class Ready(Resource):
    def get(self):
        checks = {"database": self._check("database", lambda: db.session.execute(text("SELECT 1")))}
        if rate_limits().shared:
            checks["redis"] = self._check("redis", rate_limits().ping)
        if all(state == "ok" for state in checks.values()):
            return {"status": "ok", **checks}, 200
        return error_response(
            503,
            "service_unavailable",
            "A backing service is unavailable.",
            headers={"Retry-After": str(current_app.config["RETRY_AFTER_SECONDS"])},
            **checks,
        )

    @staticmethod
    def _check(name, probe):
        try:
            probe()
            return "ok"
        except Exception as e:
            log.warning("Readiness: %s unavailable: %s: %s", name, e.__class__.__name__, e)
            db.session.rollback()
            return "unavailable"
