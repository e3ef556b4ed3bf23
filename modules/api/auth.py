"""HTTP Basic authentication for the API (`--api-auth user:pass[,user2:pass2]`).

It is a dependency of the API router itself, so it runs for every route the router has, whatever
path spelling or method reaches it; there is no path-prefix check to slip past.
"""

from __future__ import annotations

import secrets
from typing import Callable

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials

_basic = HTTPBasic(auto_error=False)


def _matches(credentials: HTTPBasicCredentials, allowed: list[tuple[str, str]]) -> bool:
    given_user = credentials.username.encode("utf-8")
    given_password = credentials.password.encode("utf-8")
    ok = False
    for user, password in allowed:  # every pair is compared, so timing does not reveal which matched
        ok |= secrets.compare_digest(given_user, user.encode("utf-8")) & secrets.compare_digest(given_password, password.encode("utf-8"))
    return ok


def basic_auth_dependency(allowed: list[tuple[str, str]]) -> Callable[..., None]:
    """A FastAPI dependency that answers 401 (with `WWW-Authenticate: Basic`) unless the request
    carries one of the `allowed` user/password pairs."""
    if not allowed:
        raise ValueError("basic_auth_dependency needs at least one user:password pair")

    def require_credentials(credentials: HTTPBasicCredentials | None = Depends(_basic)) -> None:
        if credentials is None or not _matches(credentials, allowed):
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail="Incorrect username or password",
                headers={"WWW-Authenticate": 'Basic realm="Easel API"'},
            )

    return require_credentials
