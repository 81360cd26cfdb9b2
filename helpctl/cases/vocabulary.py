"""The fixed words of a case record: statuses, kinds and languages.

Kept apart from the model so that commands can name them in their help without building
the record's dataclasses at start-up.
"""

STATUSES = ("open", "waiting", "filed", "closed")
KINDS = ("question", "problem", "feature-request", "access-request", "other")
LANGUAGES = ("en", "es")
