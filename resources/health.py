"""Health checks: liveness (the process serves) and readiness (its backing services answer)."""
from flask import current_app
from flask_restful import Resource
from sqlalchemy import text

from db import db
from errors import error_response
from security import revocation_store


class Health(Resource):
    def get(self):
        return {"status": "ok"}, 200


class Ready(Resource):
    def get(self):
        checks = {"database": self._check(lambda: db.session.execute(text("SELECT 1")))}
        if current_app.config.get("REDIS_URL"):
            checks["redis"] = self._check(revocation_store().ping)
        if all(state == "ok" for state in checks.values()):
            return {"status": "ok", **checks}, 200
        return error_response(503, "service_unavailable", "A backing service is unavailable.",
                              headers={"Retry-After": str(current_app.config["RETRY_AFTER_SECONDS"])},
                              **checks)

    @staticmethod
    def _check(probe):
        try:
            probe()
            return "ok"
        except Exception:
            db.session.rollback()
            return "unavailable"
