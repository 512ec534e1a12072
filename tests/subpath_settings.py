"""Server settings of a site served under a sub-path (gunicorn with SCRIPT_NAME=/shop).

Django's default MEDIA_URL ("") and a relative STATIC_URL, as ``startproject`` writes it: both
mean "under the script prefix".
"""

from tests.server_settings import *  # noqa: F403

STATIC_URL = "static/"
