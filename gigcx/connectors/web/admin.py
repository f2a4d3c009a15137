"""/admin: the brand team's dashboard, plain pages rendered on the server (no script at all).

Off until `web.admin_token` is set. The team signs in with that token and gets a signed,
expiring cookie (HMAC keyed by the token: rotating it signs everyone out; nothing is kept in
the process, so any worker serves any request); scripts may send it as a bearer token. Every
form that changes something carries a CSRF token derived from the session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.datastructures import FormData

from gigcx.app import GigCX
from gigcx.connectors.web import charts
from gigcx.connectors.web.console import REASON_LABELS, ROUTE_LABELS
from gigcx.connectors.web.dependencies import client_ip, limiter, runtime
from gigcx.connectors.web.identity import secrets_match
from gigcx.connectors.web.ratelimit import Check, Refusal
from gigcx.escalation.packet import reason_text
from gigcx.insights import drafts as draft_review
from gigcx.insights.knowledge_gaps import knowledge_gaps
from gigcx.insights.report import (
    OUTCOMES,
    Overview,
    Period,
    Satisfaction,
    conversation_rows,
    experts_report,
    human_duration,
    overview,
)
from gigcx.store.models import as_utc

HERE = Path(__file__).parent
SESSION_COOKIE = "gigcx_admin"
SESSION_SECONDS = 12 * 3600
DECIDED_BY = "brand team (/admin)"
CSP = (
    "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Bars and lines: answered, clarified, escalated; bot thumbs, people's CSAT.
BLUE, TEAL, AMBER, GREEN, VIOLET = "#2f6fdb", "#16a3a3", "#e08a1e", "#2e9e5b", "#7a5af5"


# --- refusals, rendered as pages -------------------------------------------------------------


class Refused(Exception):
    """Stop and show a page saying why (the app's JSON errors are for the API)."""

    def __init__(
        self, status: int, title: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message
        self.headers = dict(headers or {})


class SignIn(Exception):
    """Not signed in: off to the login page, then back here."""

    def __init__(self, back_to: str) -> None:
        super().__init__(back_to)
        self.back_to = back_to


def _secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


class AdminRoute(APIRoute):
    """Every /admin response gets the security headers; refusals become pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response = await handle(request)
            except Refused as refused:
                response = _page(
                    "error.html",
                    request,
                    None,
                    status=refused.status,
                    title=refused.title,
                    message=refused.message,
                )
                response.headers.update(refused.headers)
            except SignIn as sign_in:
                response = RedirectResponse(
                    "/admin/login?" + urlencode({"next": sign_in.back_to}), status_code=303
                )
            return _secure(response)

        return guarded


router = APIRouter(prefix="/admin", include_in_schema=False, route_class=AdminRoute)


# --- sessions ---------------------------------------------------------------------------------


def _sign(key: str, purpose: str, value: str) -> str:
    return hmac.new(key.encode(), f"{purpose}\n{value}".encode(), hashlib.sha256).hexdigest()


def new_session(key: str, now: float | None = None) -> str:
    now = time.time() if now is None else now
    body = f"{int(now) + SESSION_SECONDS}.{secrets.token_urlsafe(12)}"
    return f"{body}.{_sign(key, 'session', body)}"


def session_valid(key: str, cookie: str, now: float | None = None) -> bool:
    body, _, signature = cookie.rpartition(".")
    expires, _, _nonce = body.partition(".")
    if not (body and expires.isdigit() and secrets_match(signature, _sign(key, "session", body))):
        return False
    return int(expires) > (time.time() if now is None else now)


def csrf_token(key: str, session: str) -> str:
    return _sign(key, "csrf", session)


@dataclass(frozen=True)
class Admin:
    gigcx: GigCX
    csrf: str | None  # None when signed by a bearer token (a script, no cookie to ride on)


def _admin_key(gigcx: GigCX) -> str:
    token = gigcx.settings.web.admin_token
    if token is None:
        raise Refused(
            404,
            "Admin is off",
            "admin is off: set web.admin_token in gigcx.yaml (or GIGCX_WEB__ADMIN_TOKEN) to a "
            "secret of at least 16 characters, restart `gigcx serve`, and sign in with it here.",
        )
    return token.get_secret_value()


def _too_many(refusal: Refusal) -> Refused:
    return Refused(
        429,
        "Too many tries",
        f"Too many {refusal.check.what} (limit {refusal.check.limit} a minute); "
        f"try again in {refusal.retry_after} s.",
        {"Retry-After": str(refusal.retry_after)},
    )


async def _token_matches(request: Request, given: str, key: str) -> bool:
    """Rate-limited per address like the console's: past the limit even the right token
    waits, so guessing on cannot tell a right guess from a wrong one."""
    limit = request.app.state.web.admin_failures_per_minute_per_ip
    failures = Check("admin", client_ip(request), limit, "wrong admin tokens from this address")
    refusal = await limiter(request).reached([failures])
    if refusal is not None:
        raise _too_many(refusal)
    if secrets_match(given, key):
        return True
    refusal = await limiter(request).hit([failures])
    if refusal is not None:
        raise _too_many(refusal)
    return False


async def admin_access(request: Request, gigcx: Annotated[GigCX, Depends(runtime)]) -> Admin:
    key = _admin_key(gigcx)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        if not await _token_matches(request, given.strip(), key):
            raise Refused(401, "Wrong token", "missing or wrong admin token")
        return Admin(gigcx, None)
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if cookie and session_valid(key, cookie):
        return Admin(gigcx, csrf_token(key, cookie))
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise SignIn(back if request.method == "GET" else "/admin")


Signed = Annotated[Admin, Depends(admin_access)]


async def _form(request: Request, admin: Admin) -> FormData:
    """The posted form, once its CSRF token is checked (a bearer-token script has none)."""
    form = await request.form()
    if admin.csrf is not None:
        given = form.get("csrf")
        if not isinstance(given, str) or not secrets_match(given, admin.csrf):
            raise Refused(
                403,
                "Form expired",
                "This form's security token is missing or out of date (perhaps you signed in "
                "again in another tab). Go back, reload the page and try again.",
            )
    return form


def _safe_next(value: str | None) -> str:
    """Only a path inside /admin: never an open redirect."""
    if value and value.startswith("/admin") and "//" not in value and "\\" not in value:
        return value
    return "/admin"


# --- rendering --------------------------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{as_utc(moment):%Y-%m-%d %H:%M} UTC"


def _share(s: Satisfaction) -> str:
    return "-" if s.share is None else f"{s.share:.0%}"


def _money(amount: Decimal, currency: str) -> str:
    return f"{currency} {amount:,.2f}".strip()


def _label(code: str | None, labels: Mapping[str, str]) -> str:
    if not code:
        return "-"
    return labels.get(code, code.replace("_", " ").capitalize())


_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates" / "admin"),
    autoescape=True,  # customer text is shown as text, everywhere
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters.update(
    when=_when,
    duration=human_duration,
    share=_share,
    money=_money,
    reason=lambda code: _label(code, REASON_LABELS),
    route=lambda code: _label(code, ROUTE_LABELS),
    percent=lambda value: "-" if value is None else f"{value:.0%}",
    plural=lambda word, n: word if n == 1 else f"{word}s",
    last_day=lambda period: f"{period.until - timedelta(seconds=1):%b %-d, %Y}",
)


def _page(
    name: str, request: Request, admin: Admin | None, *, status: int = 200, **values: Any
) -> HTMLResponse:
    gigcx: GigCX | None = getattr(request.app.state, "gigcx", None)
    html = _templates.get_template(name).render(
        brand=gigcx.settings.display_name if gigcx else "",
        csrf=admin.csrf if admin else None,
        signed_in=admin is not None,
        path=request.url.path,
        **values,
    )
    return HTMLResponse(html, status_code=status)


def _period(request: Request) -> Period:
    month = request.query_params.get("month", "").strip()
    days = request.query_params.get("days", "").strip()
    try:
        if month:
            return Period.month(month)
        if days:
            if not days.isdigit():
                raise ValueError(f"days {days!r} is not a number of days: use 7, 30 or 90")
            return Period.last_days(int(days))
    except ValueError as error:
        raise Refused(400, "Not a period", f"{error}.") from None
    return Period.last_days(30)


def _period_query(request: Request) -> dict[str, str]:
    """The period as the page was asked for it, to keep in links."""
    return {k: v for k in ("month", "days") if (v := request.query_params.get(k, "").strip())}


# --- sign in and out --------------------------------------------------------------------------


@router.get("/admin.css")
async def stylesheet() -> FileResponse:
    return FileResponse(
        HERE / "static" / "admin.css",
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/login")
async def login_page(request: Request, gigcx: Annotated[GigCX, Depends(runtime)]) -> Response:
    _admin_key(gigcx)
    return _page(
        "login.html",
        request,
        None,
        next=_safe_next(request.query_params.get("next")),
        error=None,
        signed_out="signed_out" in request.query_params,
    )


@router.post("/login")
async def login(request: Request, gigcx: Annotated[GigCX, Depends(runtime)]) -> Response:
    key = _admin_key(gigcx)
    form = await request.form()
    given, back = form.get("token"), _safe_next(str(form.get("next") or ""))
    if not isinstance(given, str) or not await _token_matches(request, given.strip(), key):
        return _page(
            "login.html",
            request,
            None,
            status=401,
            next=back,
            error="That token is not right. Use the value of web.admin_token.",
            signed_out=False,
        )
    response = RedirectResponse(back, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        new_session(key),
        max_age=SESSION_SECONDS,
        path="/admin",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/logout")
async def logout(request: Request, admin: Signed) -> Response:
    await _form(request, admin)
    response = RedirectResponse("/admin/login?signed_out=1", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response


# --- overview and experts ---------------------------------------------------------------------


def _charts(report: Overview) -> dict[str, Any]:
    days = [d.day for d in report.days]
    volume = charts.stacked_bars(
        f"Bot turns and escalations per day, {report.period.label}",
        days,
        [
            charts.Series("Answered", [d.bot_answers for d in report.days], BLUE),
            charts.Series("Clarified", [d.clarified for d in report.days], TEAL),
            charts.Series("Escalated", [d.escalated for d in report.days], AMBER),
        ],
        y_label="Count",
    )
    satisfaction = charts.share_lines(
        f"Satisfaction per day, {report.period.label}",
        days,
        [
            charts.Series(
                "Bot answers rated helpful",
                [d.bot_helpful / d.bot_rated if d.bot_rated else None for d in report.days],
                GREEN,
            ),
            charts.Series(
                "People rated 4 or 5",
                [d.csat_satisfied / d.csat_rated if d.csat_rated else None for d in report.days],
                VIOLET,
            ),
        ],
        y_label="Satisfied",
    )
    reasons = charts.hbars(
        "Escalations by reason", [(_label(r, REASON_LABELS), n) for r, n in report.by_reason]
    )
    return {"volume": volume, "satisfaction": satisfaction, "reasons": reasons}


@router.get("")
async def overview_page(request: Request, admin: Signed) -> Response:
    period = _period(request)
    gigcx = admin.gigcx
    report = await overview(gigcx.store, gigcx.settings.brand, period)
    return _page(
        "overview.html",
        request,
        admin,
        nav="overview",
        period=period,
        period_query=_period_query(request),
        report=report,
        charts=_charts(report),
        rated_days=[d for d in report.days if d.bot_rated or d.csat_rated],
    )


@router.get("/experts")
async def experts_page(request: Request, admin: Signed) -> Response:
    period = _period(request)
    gigcx = admin.gigcx
    rows = await experts_report(gigcx.store, gigcx.settings.brand, period)
    totals: dict[str, Decimal] = {}
    for row in rows:
        if row.currency:
            totals[row.currency] = totals.get(row.currency, Decimal(0)) + row.payout
    return _page(
        "experts.html",
        request,
        admin,
        nav="experts",
        period=period,
        period_query=_period_query(request),
        rows=rows,
        totals=totals,
        available=sum(1 for r in rows if r.available),
    )


# --- knowledge gaps ---------------------------------------------------------------------------


@router.get("/gaps")
async def gaps_page(request: Request, admin: Signed) -> Response:
    period = _period(request)
    gigcx = admin.gigcx
    started = time.perf_counter()
    # Embeds every question in a worker thread: the event loop serves others meanwhile.
    clusters = await knowledge_gaps(gigcx.store, gigcx.index.embedder, gigcx.settings.brand, period)
    seconds = time.perf_counter() - started
    return _page(
        "gaps.html",
        request,
        admin,
        nav="gaps",
        period=period,
        period_query=_period_query(request),
        clusters=clusters,
        seconds=seconds,
    )


# --- conversations ----------------------------------------------------------------------------


@router.get("/conversations")
async def conversations_page(request: Request, admin: Signed) -> Response:
    period = _period(request)
    gigcx = admin.gigcx
    outcome = request.query_params.get("outcome", "").strip() or None
    if outcome is not None and outcome not in OUTCOMES:
        raise Refused(
            400, "Not an outcome", f"outcome {outcome!r} is not one of: {', '.join(OUTCOMES)}."
        )
    before_text = request.query_params.get("before", "").strip()
    before = None
    if before_text:
        try:
            before = as_utc(datetime.fromisoformat(before_text))
        except ValueError:
            raise Refused(
                400, "Not a time", f"before {before_text!r} is not a time (ISO 8601)."
            ) from None
    rows = await conversation_rows(
        gigcx.store, gigcx.settings.brand, period, outcome=outcome, before=before, limit=51
    )
    more = len(rows) > 50
    rows = rows[:50]
    keep = _period_query(request) | ({"outcome": outcome} if outcome else {})
    older = urlencode(keep | {"before": rows[-1].created_at.isoformat()}) if more else None
    return _page(
        "conversations.html",
        request,
        admin,
        nav="conversations",
        period=period,
        period_query=_period_query(request),
        rows=rows,
        outcome=outcome,
        outcomes=OUTCOMES,
        older=older,
        paged=before is not None,
    )


@router.get("/conversations/{conversation_id}")
async def conversation_page(request: Request, conversation_id: str, admin: Signed) -> Response:
    store = admin.gigcx.store
    conversation = await store.find_conversation(conversation_id)
    if conversation is None or conversation.brand != admin.gigcx.settings.brand:
        raise Refused(404, "No such conversation", f"There is no conversation {conversation_id!r}.")
    messages = await store.messages_after(conversation.id, 0, 2000)
    trails = await store.decision_trails(conversation.id)
    ratings = await store.answer_ratings(conversation.id)
    handoffs = await store.handoffs_of(conversation.id)
    by_seq: dict[int, list[Any]] = {}
    for trail in trails:
        by_seq.setdefault(trail.seq, []).append(trail)
    shown = {m.seq for m in messages}
    return _page(
        "conversation.html",
        request,
        admin,
        nav="conversations",
        conversation=conversation,
        messages=messages,
        trails=by_seq,
        loose_trails=[t for t in trails if t.seq not in shown],
        ratings=ratings,
        handoffs=handoffs,
        reason_text=reason_text,
    )


# --- knowledge drafts -------------------------------------------------------------------------


@router.get("/drafts")
async def drafts_page(request: Request, admin: Signed) -> Response:
    state = request.query_params.get("state", "").strip() or None
    gigcx = admin.gigcx
    try:
        drafts = await draft_review.list_drafts(gigcx.store, gigcx.settings.brand, state)
    except draft_review.DraftError as error:
        raise Refused(400, "Not a state", f"{error}.") from None
    return _page(
        "drafts.html",
        request,
        admin,
        nav="drafts",
        drafts=drafts,
        state=state,
        names=await _expert_names(gigcx),
    )


async def _expert_names(gigcx: GigCX) -> dict[str, str]:
    return {e.key: e.name for e in await gigcx.store.experts(gigcx.settings.brand)}


async def _draft_page(
    request: Request,
    admin: Admin,
    draft: Any,
    *,
    status: int = 200,
    error: str | None = None,
    values: Mapping[str, str] | None = None,
) -> HTMLResponse:
    shown = dict(
        values
        or {
            "question": draft.question,
            "alternatives": "\n".join(draft.alternatives or []),
            "answer": draft.answer,
            "product": draft.product or "",
            "tags": ", ".join(draft.tags or []),
        }
    )
    return _page(
        "draft.html",
        request,
        admin,
        status=status,
        nav="drafts",
        draft=draft,
        error=error,
        values=shown,
        products=[(p.id, p.name) for p in admin.gigcx.settings.products],
        done=request.query_params.get("done"),
        names=await _expert_names(admin.gigcx),
    )


async def _draft(admin: Admin, draft_id: str) -> Any:
    try:
        return await draft_review.get_draft(admin.gigcx.store, admin.gigcx.settings.brand, draft_id)
    except LookupError:
        raise Refused(404, "No such draft", f"There is no draft {draft_id!r}.") from None


@router.get("/drafts/{draft_id}")
async def draft_page(request: Request, draft_id: str, admin: Signed) -> Response:
    return await _draft_page(request, admin, await _draft(admin, draft_id))


@router.post("/drafts/{draft_id}")
async def decide_draft(request: Request, draft_id: str, admin: Signed) -> Response:
    form = await _form(request, admin)
    draft = await _draft(admin, draft_id)
    gigcx = admin.gigcx
    fields = {
        name: str(form.get(name) or "")
        for name in ("question", "alternatives", "answer", "product", "tags")
    }
    action = str(form.get("action") or "")
    try:
        if action in ("save", "accept"):
            await draft_review.edit_draft(
                gigcx.store,
                gigcx.settings.brand,
                draft.id,
                question=fields["question"],
                alternatives=fields["alternatives"].splitlines(),
                answer=fields["answer"],
                product=fields["product"],
                tags=fields["tags"].split(","),
            )
            if action == "accept":
                await draft_review.accept_draft(
                    gigcx.store, gigcx.settings, draft.id, by=DECIDED_BY
                )
        elif action == "reject":
            await draft_review.reject_draft(
                gigcx.store, gigcx.settings.brand, draft.id, by=DECIDED_BY
            )
        else:
            raise draft_review.DraftError(f"action {action!r}: use Save, Accept or Reject")
    except draft_review.DraftError as error:
        draft = await _draft(admin, draft_id)
        return await _draft_page(request, admin, draft, status=409, error=str(error), values=fields)
    done = {"save": "saved", "accept": "accepted", "reject": "rejected"}[action]
    return RedirectResponse(f"/admin/drafts/{draft.id}?done={done}", status_code=303)
