// Agent tests (issue 5).
