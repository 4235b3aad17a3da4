"""The pool recipe over real upstreams: alternation, a dead upstream, the status page."""

from __future__ import annotations

import importlib
import json
from wsgiref.validate import validator

from webtest import TestApp

from tests.middlewares.forward_parts import Upstreams


def test_the_pool_alternates_and_survives_a_dead_upstream(monkeypatch):
    pool = Upstreams()
    try:
        a = pool.start("a")
        b = pool.start("b")
        monkeypatch.setenv("UPSTREAMS", f"{a},{b}")
        recipe = importlib.reload(importlib.import_module("recipes.load_balance_pool"))
        site = TestApp(validator(recipe.app))
        assert [site.get("/x").text.split()[0] for _ in range(4)] == ["a", "b", "a", "b"]
        pool.stop("a")
        assert {site.get("/x").text.split()[0] for _ in range(4)} == {"b"}
        status = json.loads(site.get("/status").text)
        assert [row["up"] for row in status] == [False, True]
        recipe.pool.close()
    finally:
        pool.close()
