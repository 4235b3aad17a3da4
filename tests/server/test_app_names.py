"""Each way ``wsgistack serve --help`` names an app really serves it, in a real master."""

from __future__ import annotations

import pytest

from wsgistack.server.cli import APP_FORMS

MYAPP = """
from wsgiref.validate import validator


def _answer(text):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [text.encode()]

    return validator(app)


app = _answer("attr")


def create_app(name):
    return _answer(f"factory {name}")
"""

WSGI = """
from myapp import _answer

application = _answer("module")
"""


@pytest.mark.parametrize(
    ("spec", "answer"),
    [
        ("myapp:app", "attr"),
        ("mysite.wsgi", "module"),
        ("myapp:create_app('prod')", "factory prod"),
    ],
    ids=["module:attr", "module", "module:factory"],
)
def test_each_example_in_the_help_serves(serve, tmp_path, spec, answer):
    # The help named module:attr only; these are its examples of every form.
    assert f"({spec})" in APP_FORMS or f": {spec})" in APP_FORMS
    (tmp_path / "myapp.py").write_text(MYAPP)
    (tmp_path / "mysite").mkdir()
    (tmp_path / "mysite" / "__init__.py").write_text("")
    (tmp_path / "mysite" / "wsgi.py").write_text(WSGI)
    server = serve(target=(spec,))
    assert server.get() == answer
