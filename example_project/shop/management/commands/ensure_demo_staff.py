"""Create (or reset) the example shop's staff login and print it. Safe to run any number of times.

The user is a superuser, so it sees the whole admin, the Cache warmers page and its Warm now
buttons. This is a demo login for a server on 127.0.0.1: don't run it against a real database.
"""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

DEFAULT_USERNAME = "demo"
DEFAULT_PASSWORD = "cachewarmers"


class Command(BaseCommand):
    help = "Create or reset the demo staff user (a superuser) and print its username and password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--username",
            default=os.environ.get("DEMO_USERNAME", DEFAULT_USERNAME),
            help=f"default: $DEMO_USERNAME, else {DEFAULT_USERNAME!r}",
        )
        parser.add_argument(
            "--password",
            default=os.environ.get("DEMO_PASSWORD", DEFAULT_PASSWORD),
            help=f"default: $DEMO_PASSWORD, else {DEFAULT_PASSWORD!r}",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        password: str = options["password"]
        if not username or not password:
            raise CommandError("the username and the password must not be empty")
        User = get_user_model()
        user, created = User._default_manager.get_or_create(**{User.USERNAME_FIELD: username})
        user.is_staff = True
        user.is_superuser = True
        user.is_active = True
        user.set_password(password)
        user.save()
        state = "created" if created else "already there, password reset"
        self.stdout.write(f"Staff login: username {username!r}, password {password!r} ({state})")
