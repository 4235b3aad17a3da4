"""The Django project the README's ``mysite/wsgi.py`` belongs to (its settings only)."""
