"""Settings of the README's ``mysite``: the real test site of ``tests/djangoapp.py``.

Used where ``mysite.wsgi`` is loaded in a fresh interpreter (``wsgistack check
stack.toml``); inside pytest, ``tests.djangoapp`` configures the same settings.
"""

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.djangoapp"
INSTALLED_APPS = ["django.contrib.staticfiles"]
MIDDLEWARE: list[str] = []
STATIC_URL = "static/"
USE_TZ = True
