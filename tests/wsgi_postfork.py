"""The uWSGI recipe of docs/deployment.md: each worker starts warming after the fork (postfork)."""

import os

from django.core.wsgi import get_wsgi_application

from django_cachewarmers import autostart

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.server_settings")
application = get_wsgi_application()

try:
    from uwsgidecorators import postfork
except ImportError:  # not running under uWSGI
    pass
else:
    postfork(autostart.start)
