"""The module:attr loader, gunicorn's convention."""

from __future__ import annotations

import os
import re
import sys

import pytest

from tests import pipeline_fixtures
from wsgistack.errors import ConfigError
from wsgistack.loader import import_object, load_app

FIX = "tests.pipeline_fixtures"


def test_module_attr():
    assert load_app(FIX + ":tags_app") is pipeline_fixtures.tags_app


def test_module_alone_means_application(tmp_path, monkeypatch):
    (tmp_path / "site_wsgi.py").write_text(
        "def application(environ, start_response):\n    return []\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_app("site_wsgi").__name__ == "application"


def test_factory_call_with_literal_arguments():
    app = load_app(FIX + ":make_tags_app('hi ')")
    assert app.__qualname__ == "make_tags_app.<locals>.app"


def test_dotted_attribute():
    assert import_object(FIX + ":Tagger.__call__") is pipeline_fixtures.Tagger.__call__


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param("no_such_module_xyz:app", "no module named 'no_such_module_xyz'", id="module"),
        pytest.param(FIX + ":nope", "has no attribute 'nope'", id="attr"),
        pytest.param(FIX + ":not_an_app", "int object is not a WSGI app", id="int"),
        pytest.param(FIX + ":make_tags_app(x)", "must be literals", id="nonliteral"),
        pytest.param(FIX + ":make_tags_app({[1]: 2})", "unhashable", id="unhashable-literal"),
        pytest.param(FIX + ":1+", "is not an attribute name or a call", id="syntax"),
        pytest.param("", "expected 'module:attr'", id="empty"),
        pytest.param(":app", "'' is not a module name", id="no-module"),
        pytest.param(".relative:app", "'.relative' is not a module name", id="relative"),
        pytest.param(
            FIX + ":make_tags_app(nope=1)",
            "make_tags_app() does not take these arguments: got an unexpected keyword argument",
            id="bad-argument",
        ),
        pytest.param(FIX + ":not_an_app()", "int object is not callable", id="call-a-constant"),
        pytest.param(
            FIX + ":make_tags_app(**{'greeting': 'x'})", "not as **mapping", id="double-star"
        ),
    ],
)
def test_errors_name_the_spec(spec, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_app(spec)


def test_a_type_error_inside_a_factory_stays_a_traceback(tmp_path, monkeypatch):
    # Only arguments the factory cannot take are a configuration error; its own bugs are not.
    (tmp_path / "buggy_factory.py").write_text("def make():\n    return len(5)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="has no len"):
        load_app("buggy_factory:make()")


def test_calls_are_refused_where_an_object_is_expected():
    with pytest.raises(ConfigError, match="a call is not allowed here"):
        import_object(FIX + ":make_tags_app()")


def test_a_module_that_fails_to_import_says_why(tmp_path, monkeypatch):
    (tmp_path / "broken_mod.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="importing 'broken_mod' failed"):
        load_app("broken_mod:app")


def test_a_missing_package_reads_as_not_found_not_as_a_failed_import():
    # 'mysite.wsgi' with no 'mysite' at all is a typo or a wrong directory, as
    # when 'mysite.wsgi' alone is missing; not an import failing inside the app.
    with pytest.raises(ConfigError) as caught:
        load_app("no_such_package_xyz.wsgi:application")
    assert str(caught.value).startswith(
        "'no_such_package_xyz.wsgi:application': no module named 'no_such_package_xyz' ("
    )


def test_a_circular_import_in_the_app_is_a_failed_import_not_a_missing_module(
    tmp_path, monkeypatch
):
    # The ImportError names the module the name was wanted from, the app's own
    # package here; it used to read "no module named 'circular_pkg'".
    package = tmp_path / "circular_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from circular_pkg.views import app\nGREETING = 'hi'\n")
    (package / "views.py").write_text("from circular_pkg import GREETING\napp = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="importing 'circular_pkg' failed: cannot import name"):
        load_app("circular_pkg:app")


# What a new user gets wrong first: the app's name, the directory, a file name.


def test_a_misspelt_attribute_is_answered_with_the_closest_name():
    with pytest.raises(ConfigError) as caught:
        load_app(FIX + ":tags_ap")
    assert str(caught.value) == (
        f"'{FIX}:tags_ap': '{FIX}' has no attribute 'tags_ap' (did you mean 'tags_app'?)"
    )


def test_a_missing_factory_is_named_without_its_call():
    # It read "has no attribute 'make_tag_app('hi')'": no attribute is called that.
    with pytest.raises(ConfigError) as caught:
        load_app(FIX + ":make_tag_app('hi')")
    assert str(caught.value).endswith(
        f"'{FIX}' has no attribute 'make_tag_app' (did you mean 'make_tags_app'?)"
    )


def test_a_missing_dotted_attribute_names_the_part_that_is_missing():
    with pytest.raises(ConfigError) as caught:
        import_object(FIX + ":Tagger.__cal__")
    assert str(caught.value) == (
        f"'{FIX}:Tagger.__cal__': '{FIX}:Tagger' has no attribute '__cal__'"
        " (did you mean '__call__'?)"
    )


@pytest.mark.parametrize(
    ("module", "attr", "hint"),
    [
        pytest.param("flask_style_xyz", "app", "app", id="app"),
        pytest.param("other_style_xyz", "site", "NAME", id="other"),
    ],
)
def test_a_module_alone_without_application_asks_for_the_apps_name(
    tmp_path, monkeypatch, module, attr, hint
):
    # Flask apps are usually 'app': "has no attribute 'application'" alone
    # did not say that the name was the default, nor how to give another.
    (tmp_path / f"{module}.py").write_text(f"{attr} = lambda environ, start_response: []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        load_app(module)
    assert str(caught.value) == (
        f"'{module}': '{module}' has no attribute 'application', the name taken"
        f" when none is given; name the app: '{module}:{hint}'"
    )


@pytest.mark.parametrize("spec", ["file_named_xyz.py:app", "file_named_xyz.py"])
def test_a_file_name_is_answered_with_the_module_name(tmp_path, monkeypatch, spec):
    (tmp_path / "file_named_xyz.py").write_text("app = lambda environ, start_response: []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        load_app(spec)
    fixed = spec.replace(".py", "")
    assert str(caught.value) == (
        f"'{spec}': no module named 'file_named_xyz.py': name the module, not its file: {fixed!r}"
    )


def test_a_missing_module_names_the_working_directory_it_was_looked_for_in(tmp_path, monkeypatch):
    # The CLI imports from the working directory: started elsewhere, the bare
    # "no module named 'myapp'" did not say where it had looked.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PWD", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        load_app("no_such_module_xyz:app")
    assert str(caught.value) == (
        "'no_such_module_xyz:app': no module named 'no_such_module_xyz'"
        f" (not in the working directory {os.getcwd()}, nor installed for {sys.executable})"
    )


def test_a_missing_module_off_the_working_directory_says_where_else_it_looked(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # not on sys.path: saying it was looked in would be false
    with pytest.raises(ConfigError) as caught:
        load_app("no_such_module_xyz:app")
    assert str(caught.value) == (
        "'no_such_module_xyz:app': no module named 'no_such_module_xyz'"
        f" (not installed for {sys.executable}, nor elsewhere on sys.path)"
    )
