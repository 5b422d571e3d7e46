"""What every page is held to in a real browser: accessibility (axe-core), a phone's width,
and ways to wait for the live parts of a page without reloading it."""
from axe_playwright_python.sync_playwright import Axe
from django.db.models import Q

from operations.models import TERMINAL

PHONE = {"width": 390, "height": 844}
_axe = Axe()


def assert_accessible(page) -> None:
    """No serious or critical axe-core violation."""
    results = _axe.run(page)
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
           for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert bad == [], f"accessibility violations on {page.url}: {bad}"


def assert_fits_a_phone(page) -> None:
    """At 390×844 nothing scrolls sideways, and every button can be reached."""
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(100)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 0:
        wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
            .filter(e => !(e.parentElement && e.parentElement.closest('.table-scroll')))
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
            .slice(0, 6).map(e => e.tagName + '.' + e.className + ' ' +
                              Math.round(e.getBoundingClientRect().right))""")
        raise AssertionError(f"{page.url} scrolls sideways by {overflow}px at 390 px: {wide}")
    outside = page.evaluate("""() => [...document.querySelectorAll('button, a.button, input[type=submit]')]
        .filter(b => b.offsetParent !== null)
        .map(b => [b.textContent.trim(), b.getBoundingClientRect()])
        .filter(([t, r]) => r.left < 0 || r.right > window.innerWidth + 1)
        .map(([t, r]) => t)""")
    assert outside == [], f"buttons out of reach at 390 px on {page.url}: {outside}"


def marker(page) -> None:
    """Mark the document: if it is still marked later, the page was never reloaded."""
    page.evaluate("window.__stayed = true")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.__stayed === true"), "the page reloaded"


def settled(operations) -> bool:
    """Nothing of these runs or is waiting, and no finished one still has its follow-ups (the
    next step, the owner's notification) to come."""
    return not operations.filter(
        ~Q(status__in=TERMINAL) | Q(followup_due=True)).exists()
