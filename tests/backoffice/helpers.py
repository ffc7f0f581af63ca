"""Shared set-up for the back-office browser tests: payments through the real services."""
from __future__ import annotations

from payments import services
from payments.states import PaymentMethod
from terminals.models import Terminal


def sale(terminal: Terminal, *, method: PaymentMethod = PaymentMethod.CARD, amount: str = "10.00", **card):  # type: ignore[no-untyped-def]
    """A terminal sale with a fresh token, as the terminal listener would make it."""
    token = services.token_issue(terminal_pk=terminal.pk, payment_type=method)
    return services.payment_sale_with_token(
        terminal_pk=terminal.pk, token=token.value, method=method, amount=amount, **card
    )


def csrf_token(page) -> str:  # type: ignore[no-untyped-def]
    """The CSRF cookie of the page's browser context (set by any admin form page)."""
    for cookie in page.context.cookies():
        if cookie["name"] == "csrftoken":
            return cookie["value"]
    page.goto("/admin/login/")  # sets it
    return csrf_token(page)


def post_form(page, url: str, data: dict[str, object]):  # type: ignore[no-untyped-def]
    """A POST straight to ``url`` with the browser's cookies and a valid CSRF
    token, as a crafted form would send it: proves a view refuses (or
    accepts) a request whatever buttons the page showed. Redirects are not
    followed (the answer's status and Location are what it says)."""
    form = {key: value if isinstance(value, (str, int, float, bool)) else str(value) for key, value in data.items()}
    return page.request.post(url, form=form, headers={"X-CSRFToken": csrf_token(page)}, max_redirects=0)


def post_action(page, changelist: str, action: str, pks: list[int]):  # type: ignore[no-untyped-def]
    """The admin's action form posted directly (``_selected_action`` may repeat)."""
    body = "&".join([f"action={action}", "index=0", "select_across=0",
                     *(f"_selected_action={pk}" for pk in pks)])
    return page.request.post(changelist, data=body, max_redirects=0, headers={
        "X-CSRFToken": csrf_token(page), "Content-Type": "application/x-www-form-urlencoded",
    })
