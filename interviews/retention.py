"""What interviews keep: a session whose questions and feedback all finished before the
horizon goes whole (its turns and their operations); a session still in use stays."""
from interviews.models import InterviewSession, InterviewTurn
from operations import retention


def operations_of(session) -> list:
    pairs = InterviewTurn.objects.filter(session=session).values_list("question_operation",
                                                                      "feedback_operation")
    return [pk for pair in pairs for pk in pair if pk]


retention.register(retention.whole(InterviewSession, "interview sessions", operations_of))
