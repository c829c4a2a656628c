"""What became of a Jodoo push, by its X-JDY-DeliverId.

An applied push's row is inserted in the same transaction as its effect; the
primary key makes a second copy of the push (a retry, or two copies racing on
two workers) fail to insert, so it has no second effect. A refused push (403)
changed nothing, so its row only says why: a retry of it is judged afresh and,
if it may now apply, takes the row over as applied.
"""

from core.clock import utcnow
from db import db

APPLIED = "applied"
REFUSED = "refused"


class JodooDeliveryModel(db.Model):
    __tablename__ = "jodoo_deliveries"

    deliver_id = db.Column(db.String(128), primary_key=True)
    # When the row was last written: the push applied, or refused.
    applied_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
    status = db.Column(db.String(10), nullable=False, default=APPLIED, server_default=APPLIED)
    # Why a refused push was refused (its error code and message); NULL when applied.
    reason = db.Column(db.String(200))
