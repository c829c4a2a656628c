"""A Jodoo push already applied, by its X-JDY-DeliverId.

The row is inserted in the same transaction as the push's effect; its primary
key makes a second copy of the push (a retry, or two copies racing on two
workers) fail to insert, so it has no second effect.
"""

from core.clock import utcnow
from db import db


class JodooDeliveryModel(db.Model):
    __tablename__ = "jodoo_deliveries"

    deliver_id = db.Column(db.String(128), primary_key=True)
    applied_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
