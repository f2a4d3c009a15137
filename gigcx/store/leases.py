"""Leases: a job only one server process may run at a time, held for a short while and
renewed while it runs."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from gigcx.store.models import Lease, utcnow
from gigcx.store.repository import Repository


class Leases(Repository):
    async def hold_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take or renew the lease `name` for `ttl`; False while another holder has it."""
        now = utcnow()
        async with self._sessions.begin() as session:
            renewed = await session.scalar(
                update(Lease)
                .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
                .values(holder=holder, expires_at=now + ttl)
                .returning(Lease.name)
            )
            if renewed is not None:
                return True
            try:
                async with session.begin_nested():
                    session.add(Lease(name=name, holder=holder, expires_at=now + ttl))
            except IntegrityError:
                return False  # someone else holds it
            return True
