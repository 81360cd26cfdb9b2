"""Access management: grants, role changes and revocations, one or thousands, as approved plans.

Every change goes the same way. Intents (from a command or a CSV) are checked against the
platform's state into a plan (`plan`), and the plan is approved (`approval`). Apply then sends
the mutations with a journal, results and audit entries (`apply`, `journal`), and `undo`
builds the inverse plan. `state` reads memberships, `roles` maps role names, and `csvinput` reads
the CSV files people export.

The submodules import the platform client lazily or through their callers, so importing
this package stays cheap.
"""
