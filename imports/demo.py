"""The imports demo: a real stored export whose full pass fails part-way (an injected fault on
the first run only), so "Retry deep memory" can be clicked and resumes from the checkpoint."""
from pathlib import Path

from django.core.files import File

from imports.models import Profile
from imports.passes import accept_upload

SAMPLE = Path(__file__).resolve().parent / "sample" / "chatgpt_real_2023-06_pkuppens_subset.conversations.json"


def seed(user):
    if Profile.objects.filter(user=user).exists():
        return
    with open(SAMPLE, "rb") as sample:
        accept_upload(user, File(sample), name="chatgpt-export-2023-06.json",
                      fault={"at": 25, "error": "permanent", "retry_numbers": [0]})
