"""Request fields that take JSON as the schema says: a string is a string, a number a number,
a boolean a boolean. DRF's own fields are lenient (a CharField takes 5, a BooleanField takes
"yes"), so the API would accept bodies its OpenAPI schema forbids."""
import re

from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A string, taken as sent. DRF trims whitespace (Unicode's too, such as U+0085) before it
    checks `max_length`, `min_length` and blankness, so a trimmed field would accept strings
    longer than the schema's `maxLength`: the limits here hold for what the client sent."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


# RFC 3339's date-time, which the schema's `format: date-time` means: a "T" between date and
# time, and an offset. DRF also takes "2026-12-02 10:00" or no offset at all (it assumes the
# server's time zone), so the server would accept what the schema calls invalid.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class StrictDateTimeField(serializers.DateTimeField):
    def to_internal_value(self, value):
        if not isinstance(value, str) or not RFC3339.match(value):
            self.fail("invalid", format="RFC 3339, such as 2026-12-02T10:00:00Z")
        return super().to_internal_value(value)
