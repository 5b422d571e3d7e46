"""The whole API under /api/v1/, in one list."""
from operations.api.urls import urlpatterns as operation_urls

urlpatterns = [*operation_urls]
