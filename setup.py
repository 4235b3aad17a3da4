"""The one compiled part: an optional C speedup; everything else is in pyproject.toml.

``optional=True``: where it cannot be built (no C compiler), the install goes on
with a warning, and wsgistack uses the same code in Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "wsgistack.server._uwsgi_vars",
            ["wsgistack/server/_uwsgi_vars.c"],
            optional=True,
        )
    ]
)
