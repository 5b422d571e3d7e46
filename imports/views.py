from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from operations.models import Operation


@login_required
def dashboard(request):
    recent = Operation.objects.filter(owner=request.user)[:10]
    return render(request, "imports/dashboard.html", {"recent": recent})
