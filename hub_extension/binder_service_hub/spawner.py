"""`BuildFromRepoMixin`: "Build from repository" for any spawner with an `image` (DockerSpawner, KubeSpawner).

On the spawn form it adds a repository + ref section next to the base spawner's own form (image choice,
KubeSpawner's profile list). On spawn it mints a short-lived token for the user that may only build,
asks binder-service for the image, relays the build's events to the spawn-pending page, revokes the
token, and starts the server in the built image. A failed build fails the spawn with the build's message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

from binder_service_client import BinderServiceError, BuildClient
from jupyterhub import orm
from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import Bool, Float, Integer, List, Unicode

from .form import (
    OPTION_KEYS,
    BuildRequest,
    InvalidBuildRequest,
    build_request,
    options_from_form,
    redact,
    render_form,
)
from .progress import ProgressLog
from .register import BUILD_SCOPE

TOKEN_NOTE = "binder-service build for a spawn (revoked when the build ends)"  # noqa: S105 (a note)


class BuildFailed(web.HTTPError):
    """The build of the user's repository failed: the spawn fails with the build's own message."""

    def __init__(self, message: str, *, code: str = "build_failed", status: int = 500) -> None:
        super().__init__(status, log_message=message)
        self.code = code
        # What JupyterHub shows on the spawn page (jupyterhub.utils.format_exception reads it).
        self.jupyterhub_message = message


class BuildFromRepoMixin(Spawner):  # type: ignore[misc]
    """Mix in before a spawner class: `class MySpawner(BuildFromRepoMixin, DockerSpawner)`."""

    if TYPE_CHECKING:  # traits of JupyterHub's Spawner and of the image-running spawners, for mypy
        user_options: dict[str, Any]
        image: Any
        start_timeout: int

    binder_service_url = Unicode(
        "",
        config=True,
        help="""binder-service's base URL as the hub reaches it (not through the proxy), with the
        service prefix, e.g. http://127.0.0.1:8585/services/binder/. Set by binder_service_hub.register().""",
    )
    binder_form_enabled = Bool(True, config=True, help="Show the 'Build from repository' section.")
    binder_form_title = Unicode("Build from repository", config=True, help="Title of the form section.")
    binder_token_scopes = List(
        Unicode(),
        default_value=[BUILD_SCOPE],
        config=True,
        help="Scopes of the token minted for a spawn's build request; the user must hold them.",
    )
    binder_token_expires_in = Integer(
        300,
        config=True,
        help="Seconds each build token lives at most. A token is minted per request to the service "
        "(the event stream reconnects with a fresh one) and revoked when the build ends.",
    )
    binder_build_timeout = Float(
        3600.0, config=True, help="Seconds a spawn waits for its build (added to start_timeout)."
    )
    binder_request_timeout = Float(30.0, config=True, help="Timeout of one request to the service.")
    binder_read_timeout = Float(
        120.0, config=True, help="Seconds without an event or keepalive before the stream is reconnected."
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The configured values, restored for spawns that do not build (the spawner object is reused).
        self._binder_configured_image: Any = getattr(self, "image", None)
        self._binder_start_timeout: int = self.start_timeout
        self._binder_request: BuildRequest | None = None
        self._binder_progress: ProgressLog | None = None
        self._binder_image: str | None = None

    # --- the form ---

    async def get_options_form(self) -> str:
        base = await super().get_options_form()
        if not self.binder_form_enabled or not self.binder_service_url:
            return str(base or "")  # nothing to build with: the base spawner's form only
        previous = getattr(self.orm_spawner, "user_options", None) or self.user_options or {}
        return str(base or "") + render_form(previous, title=self.binder_form_title)

    async def run_options_from_form(self, form_data: dict[str, list[str]]) -> dict[str, Any]:
        ours = {k: v for k, v in form_data.items() if k not in OPTION_KEYS}
        base = super().run_options_from_form(ours)
        if isawaitable(base):
            base = await base
        options = dict(base or {})
        if self.binder_form_enabled:
            options.update(options_from_form(form_data))
        return options

    async def options_from_query(self, query_data: dict[str, list[str]]) -> dict[str, Any]:
        # /hub/spawn?binder_repo=...&binder_ref=...&binder_build=on goes the form's way.
        return await self.run_options_from_form(query_data)

    # --- the spawn ---

    def run_pre_spawn_hook(self) -> Any:
        """Decide whether this spawn builds, before JupyterHub reads start_timeout."""
        try:
            self._binder_request = build_request(self.user_options or {})
        except InvalidBuildRequest as e:
            raise BuildFailed(str(e), code="invalid_request", status=400) from e
        self._binder_image = None
        if self._binder_request is not None:
            self._binder_progress = ProgressLog()
            self.start_timeout = self._binder_start_timeout + int(self.binder_build_timeout)
        else:
            self._binder_progress = None
            self.start_timeout = self._binder_start_timeout
        return super().run_pre_spawn_hook()

    async def start(self) -> Any:
        request = self._binder_request
        if request is None:
            if hasattr(self, "image"):
                self.image = self._binder_configured_image
            return await super().start()
        image = await self._build(request)
        self._binder_image = image
        self._use_image(image)
        try:
            # Called before progress() moves on to the base spawner's events: KubeSpawner's progress
            # follows the start future this call sets.
            started = super().start()
        finally:
            if self._binder_progress is not None:
                self._binder_progress.close()
        return await started

    def _use_image(self, image: str) -> None:
        """Start the server in `image`; spawners that pick images from user_options refine this."""
        self.image = image

    # JupyterHub insists that every Spawner subclass defines these; the base spawner does the work.
    async def stop(self, now: bool = False) -> Any:
        return await super().stop(now=now)

    async def poll(self) -> Any:
        return await super().poll()

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        log = self._binder_progress
        if log is not None:
            async for event in log.follow():
                yield event
            if self._binder_image is None:
                return  # the build failed: JupyterHub reports the spawn's error next
        async for event in super().progress():
            yield event

    async def _build(self, request: BuildRequest) -> str:
        log = self._binder_progress or ProgressLog()
        self._binder_progress = log
        tokens: list[str] = []
        started = time.monotonic()
        try:
            image = await self._request_image(request, log, tokens)
        except BaseException as e:
            if isinstance(e, BuildFailed):
                log.add({"progress": 100, "message": f"Build failed: {e.jupyterhub_message}"})
            log.close()
            raise
        finally:
            self._revoke(tokens)
        self.log.info(
            "binder build for %s ready: image=%s repo=%s ref=%s seconds=%.1f",
            self._log_name, image, redact(request.repo), request.ref, time.monotonic() - started,
        )  # fmt: skip
        log.add({"progress": 90, "message": f"Starting your server with image {image}"})
        return image

    async def _request_image(self, request: BuildRequest, log: ProgressLog, tokens: list[str]) -> str:
        if not self.binder_service_url:
            raise BuildFailed("building from a repository is not configured (no binder_service_url)")

        def token() -> str:
            try:
                value: str = self.user.new_api_token(
                    note=TOKEN_NOTE,
                    scopes=list(self.binder_token_scopes),
                    expires_in=self.binder_token_expires_in,
                )
            except ValueError as e:  # the user does not hold the scopes (JupyterHub checks)
                raise BuildFailed(f"you may not build images here ({e})", code="forbidden", status=403) from e
            tokens.append(value)
            return value

        log.add({"progress": 2, "message": f"Requesting an image of {redact(request.repo)} at {request.ref}"})
        try:
            async with (
                asyncio.timeout(self.binder_build_timeout),
                BuildClient(
                    self.binder_service_url,
                    token=token,
                    timeout=self.binder_request_timeout,
                    read_timeout=self.binder_read_timeout,
                ) as client,
            ):
                build = await client.create_build(request.repo, request.ref, request.provider)
                if not isinstance(build.get("id"), str) or not isinstance(build.get("image_name"), str):
                    raise BuildFailed("the build service sent an unexpected response", code="bad_response")
                self.log.info(
                    "binder build for %s: id=%s status=%s image=%s",
                    self._log_name, build.get("id"), build.get("status"), build.get("image_name"),
                )  # fmt: skip
                if build.get("status") == "ready" and build.get("image_name"):
                    log.add({"progress": 85, "message": "Found built image"})
                    return str(build["image_name"])
                async with aclosing(client.events(str(build["id"]))) as events:
                    async for event in events:
                        log.add_build_event(event)
                        if event.get("phase") == "failed":
                            raise BuildFailed(
                                str(event.get("message") or "the build failed").strip(),
                                code=str(event.get("code") or "build_failed"),
                            )
                        if event.get("phase") == "ready":
                            return str(event.get("image_name") or build["image_name"])
                raise BuildFailed("the build's event stream ended without a result")
        except TimeoutError as e:
            raise BuildFailed(
                f"the build did not finish within {self.binder_build_timeout:.0f} seconds",
                code="build_timeout",
            ) from e
        except BinderServiceError as e:
            raise BuildFailed(e.message, code=e.code) from e

    def _revoke(self, tokens: list[str]) -> None:
        """Delete the build tokens minted for this spawn (they would expire anyway)."""
        if not tokens:
            return
        db = self.user.db
        try:
            for value in tokens:
                found = orm.APIToken.find(db, value)
                if found is not None:
                    db.delete(found)
            db.commit()
        except Exception:
            db.rollback()
            self.log.exception("could not revoke %d build token(s) of %s", len(tokens), self._log_name)
        tokens.clear()


def user_options_without(options: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """A copy of user_options without `keys` (e.g. an image choice a built image overrides)."""
    return {k: v for k, v in options.items() if k not in keys}
