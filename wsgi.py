"""The WSGI entry point: `gunicorn wsgi:app`."""

from recpo.app import create_app

app = create_app()
