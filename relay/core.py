"""The core, assembled: the one place that says who tells whom when something changes.

    page connects / changes state ──▶ pool.wake (waiters may now be served)
    page reports on a job ──────────▶ engine.on_page_message
    page comes back as someone else ▶ services.forget_identity (retire the old identity's conversations)
    pool loses a conversation ──────▶ prefiller.kick (the keeper tops the model up)
    pool gains a conversation ──────▶ canary.kick (its first run may start now)
    pool asks "can this be served?" ▶ a ready page of the conversation's identity exists (for a direct
                                      conversation, one the site's login gate has not stopped)
    pool asks "is one on its way?" ─▶ jobs.creating
    a request ends ─────────────────▶ monitor.record (and the JSON-lines journal, when configured)
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.canary import Canary
from relay.doctor import Doctor
from relay.engine import ReplayEngine
from relay.mirror import Mirror
from relay.monitor import Monitor
from relay.prefill import Prefiller
from relay.services import Services
from sites import lmarena as site


@dataclass
class Core:
    services: Services
    engine: ReplayEngine
    prefiller: Prefiller
    canary: Canary
    monitor: Monitor
    doctor: Doctor


def assemble(services: Services | None = None) -> Core:
    services = services or Services()
    engine = ReplayEngine(services)
    engine.mirror = Mirror(services, engine)
    core = Core(services, engine, Prefiller(services, engine), Canary(services, engine), Monitor(services),
                Doctor(services, engine))
    pool, pages = services.pool, services.pages
    pool.can_serve = lambda conv: pages.page_for(conv.identity, site.is_direct(conv.mode)) is not None
    pool.prospects = services.jobs.creating
    pool.on_shrink = core.prefiller.kick
    pool.on_grow = core.canary.kick
    pages.on_page_change = pool.wake
    pages.on_job_message = engine.on_page_message
    pages.on_identity_change = services.forget_identity
    services.requests.listeners.append(core.monitor.record)
    return core
