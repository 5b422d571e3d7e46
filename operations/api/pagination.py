"""limit/offset pagination that refuses a bad value (400 `invalid`) instead of ignoring it."""
from rest_framework import exceptions
from rest_framework.pagination import LimitOffsetPagination

MAX_LIMIT = 500


class StrictLimitOffsetPagination(LimitOffsetPagination):
    max_limit = MAX_LIMIT

    def get_limit(self, request):
        return self._number(request, self.limit_query_param, 1, self.max_limit,
                            self.default_limit)

    def get_offset(self, request):
        return self._number(request, self.offset_query_param, 0, None, 0)

    @staticmethod
    def _number(request, name, minimum, maximum, default):
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not raw.isdigit() or int(raw) < minimum or (maximum and int(raw) > maximum):
            bound = f" from {minimum} to {maximum}" if maximum else f" of at least {minimum}"
            raise exceptions.ValidationError({name: [f"Give a whole number{bound}."]})
        return int(raw)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1 if parameter["name"] == self.limit_query_param else 0
            if parameter["name"] == self.limit_query_param:
                parameter["schema"]["maximum"] = self.max_limit
        return parameters
