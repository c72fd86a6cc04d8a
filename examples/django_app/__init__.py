"""A minimal Django project serving the playground beside its own views (see asgi.py)."""
