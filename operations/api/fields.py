"""Request fields that take JSON as the schema says: a string is a string, a number a number,
a boolean a boolean. DRF's own fields are lenient (a CharField takes 5, a BooleanField takes
"yes"), so the API would accept bodies its OpenAPI schema forbids."""
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


class StrictDateTimeField(serializers.DateTimeField):
    def to_internal_value(self, value):
        if not isinstance(value, str):
            self.fail("invalid", format="ISO 8601")
        return super().to_internal_value(value)
