"""Logging in and out: the session cookie (the admin JWT) and a fresh CSRF token per session."""

from __future__ import annotations

import secrets

from fastapi import Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from inferhub.api.principal import SESSION_COOKIE, issue_token
from inferhub.ui.pages import CSRF_COOKIE, context_for, page_router, read_form, secure, set_csrf, templates

router = page_router()


@router.get("/login")
async def login_page(request: Request):
    token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = templates.TemplateResponse(
        request, "login.html", {"principal": None, "csrf": token, "next": request.query_params.get("next", ""),
                                "error": None})  # fmt: skip
    set_csrf(request, response, token)
    return response


@router.post("/login")
async def login_submit(request: Request):
    context = context_for(request)
    form = await read_form(request)
    username, password = str(form.get("username") or ""), str(form.get("password") or "")
    user = await run_in_threadpool(context.admin.users.verify, username, password) if username and password else None
    if user is None:
        return templates.TemplateResponse(
            request,
            "login.html",
            {
                "principal": None,
                "csrf": request.cookies.get(CSRF_COOKIE, ""),
                "next": form.get("next", ""),
                "error": "Wrong username or password.",
            },
        )  # fmt: skip (200: the form again, with the message; a 4xx document logs a console error)
    token, expires_in = issue_token(context.signing_key, user_id=user.id, username=user.username, role=user.role,
                                    tenant_id=user.tenant_id, minutes=context.admin_token_minutes)  # fmt: skip
    target = str(form.get("next") or "")
    if not target.startswith("/ui") or target.startswith("/ui/login"):
        target = "/ui"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=expires_in, httponly=True, samesite="strict",
                        secure=secure(request), path="/")  # fmt: skip
    set_csrf(request, response, secrets.token_urlsafe(32))  # a fresh token for the new session
    return response


@router.post("/logout")
async def logout(request: Request):
    await read_form(request)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/ui")
    return response
