"""Token authentication that cannot be used to guess tokens: a client address whose tokens
keep failing is paused like a sign-in with wrong passwords (django-axes, keyed by the address,
with no username), and answers 429 `locked_out` until the cool-off has passed."""
from axes.handlers.proxy import AxesProxyHandler
from django.contrib.auth.signals import user_login_failed
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import APIException, AuthenticationFailed

from operations import lockout

# No username: the failures of bad tokens count against the client address alone.
CREDENTIALS = {"username": None}


class LockedOut(APIException):
    status_code = 429
    default_code = lockout.LOCKED_OUT


class LimitedTokenAuthentication(TokenAuthentication):
    def authenticate(self, request):
        if not get_authorization_header(request):
            return None  # no token offered: not a guess (session auth may still apply)
        http_request = request._request
        if AxesProxyHandler.is_locked(http_request, CREDENTIALS):
            raise self.locked_out(http_request)
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            user_login_failed.send(sender=type(self), credentials=CREDENTIALS,
                                   request=http_request)
            raise

    @staticmethod
    def locked_out(http_request) -> LockedOut:
        seconds = lockout.seconds_left(http_request)
        exc = LockedOut(lockout.message(seconds))
        exc.wait = seconds or None  # DRF sends it as Retry-After
        return exc
