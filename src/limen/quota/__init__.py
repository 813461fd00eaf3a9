"""Quotas: what a user's VMs (and all VMs) may use, checked atomically before every change that adds to it.

:mod:`limen.quota.limits` is the arithmetic (pure); :mod:`limen.quota.ledger` makes it atomic across limen
instances with a database lock and reservations of changes in flight.
"""

from limen.quota.ledger import QuotaLedger, QuotaReport
from limen.quota.limits import Footprint, Limits, QuotaExceeded, Usage

__all__ = ["Footprint", "Limits", "QuotaExceeded", "QuotaLedger", "QuotaReport", "Usage"]
