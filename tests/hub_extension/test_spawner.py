"""BuildFromRepoMixin on the real DockerSpawner and KubeSpawner classes, without a hub: form, options, hooks.

The spawn itself (token, build, progress, image, revocation) runs against a real hub in tests/hub/.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from binder_service_hub import BinderDockerSpawner, BinderKubeSpawner, BuildFailed, InvalidBuildRequest
from binder_service_hub.progress import ProgressLog

PROFILES: list[dict[str, Any]] = [
    {
        "display_name": "Small",
        "slug": "small",
        "default": True,
        "profile_options": {
            "image": {
                "display_name": "Image",
                "choices": {"base": {"display_name": "Base", "kubespawner_override": {"image": "base:1"}}},
                # jupyterhub-fancy-profiles puts a built image here.
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Other image",
                    "kubespawner_override": {"image": "{value}"},
                },
            }
        },
    },
    {"display_name": "Large", "slug": "large", "kubespawner_override": {"image": "large:1", "cpu_limit": 4}},
]


SERVICE = "http://127.0.0.1:8585/services/binder/"
# KubeSpawner reads a kube config when it is made (no request is sent in these tests).
KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: test
clusters: [{name: test, cluster: {server: "http://127.0.0.1:9"}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
users: [{name: test, user: {}}]
"""


@pytest.fixture(autouse=True)
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kubernetes_asyncio.config.kube_config as kube_config

    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    # Read from $KUBECONFIG when kubernetes_asyncio was imported, which may have been earlier.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))


def docker_spawner(**kwargs: Any) -> BinderDockerSpawner:
    user = SimpleNamespace(name="ada", id=1, url="/user/ada/", base_url="/user/ada/")
    return BinderDockerSpawner(user=user, image="base:1", binder_service_url=SERVICE, **kwargs)


def kube_spawner(**kwargs: Any) -> BinderKubeSpawner:
    return BinderKubeSpawner(
        _mock=True, image="base:1", profile_list=PROFILES, binder_service_url=SERVICE, **kwargs
    )


async def test_docker_form_keeps_the_image_choice_and_adds_the_build_section() -> None:
    spawner = docker_spawner(allowed_images=["base:1", "other:2"])
    form = await spawner.get_options_form()
    assert 'name="image"' in form
    assert "other:2" in form
    assert 'id="binder-build-section"' in form


async def test_form_shows_even_when_the_base_spawner_has_none() -> None:
    spawner = docker_spawner()
    assert await docker_spawner().get_options_form()
    spawner.binder_form_enabled = False
    assert await spawner.get_options_form() == ""


async def test_no_build_section_without_a_service() -> None:
    spawner = docker_spawner(allowed_images=["base:1", "other:2"])
    spawner.binder_service_url = ""
    form = await spawner.get_options_form()
    assert 'name="image"' in form
    assert "binder-build-section" not in form


async def test_docker_options_from_form_merge_both_parts() -> None:
    spawner = docker_spawner(allowed_images=["base:1", "other:2"])
    options = await spawner.run_options_from_form(
        {"image": ["other:2"], "binder_build": ["on"], "binder_repo": ["org/repo"], "binder_ref": ["v1"]}
    )
    assert options == {
        "image": "other:2",
        "binder_build": True,
        "binder_repo": "org/repo",
        "binder_ref": "v1",
    }


async def test_bad_form_input_goes_back_to_the_form() -> None:
    # JupyterHub shows the form again with the exception's message.
    with pytest.raises(InvalidBuildRequest, match="Enter the repository"):
        await docker_spawner().run_options_from_form({"binder_build": ["on"]})


async def test_query_arguments_work_like_the_form() -> None:
    options = await docker_spawner().options_from_query({"binder_build": ["on"], "binder_repo": ["org/r"]})
    assert options == {"binder_build": True, "binder_repo": "org/r"}


async def test_kube_form_keeps_the_profile_list() -> None:
    form = await kube_spawner().get_options_form()
    assert "Small" in form
    assert "Large" in form
    assert 'name="profile"' in form
    assert 'id="binder-build-section"' in form


async def test_kube_options_from_form_keep_profile_choices() -> None:
    options = await kube_spawner().run_options_from_form(
        {"profile": ["large"], "binder_build": ["on"], "binder_repo": ["org/repo"]}
    )
    assert options["profile"] == "large"
    assert options["binder_repo"] == "org/repo"


async def test_kube_unlisted_choice_image_from_fancy_profiles() -> None:
    # The fancy-profiles flow: the image name the service returned, as the profile's unlisted choice.
    # It submits the spawn form with the image as the profile's unlisted choice (no build on the form).
    spawner = kube_spawner()
    built = "127.0.0.1:5055/binder-org-repo-abc:0123"
    spawner.user_options = await spawner.run_options_from_form(
        {"profile": ["small"], "profile-option-small--image--unlisted-choice": [built]}
    )
    assert spawner.user_options["binder_build"] is False
    spawner.run_pre_spawn_hook()
    await spawner.load_user_options()
    assert spawner.image == built


async def test_kube_built_image_wins_over_the_profile_image() -> None:
    spawner = kube_spawner()
    spawner.user_options = {"profile": "large", "binder_repo": "org/repo"}
    spawner._binder_image = "127.0.0.1:5055/built:1"
    await spawner.load_user_options()
    assert spawner.image == "127.0.0.1:5055/built:1"
    assert spawner.cpu_limit == 4  # the rest of the profile still applies


def test_building_extends_start_timeout_only_for_that_spawn() -> None:
    spawner = docker_spawner(start_timeout=60, binder_build_timeout=600)
    spawner.user_options = {"binder_repo": "org/repo"}
    spawner.run_pre_spawn_hook()
    assert spawner.start_timeout == 660
    spawner.user_options = {}
    spawner.run_pre_spawn_hook()
    assert spawner.start_timeout == 60


def test_bad_api_options_fail_the_spawn_with_400() -> None:
    spawner = docker_spawner()
    spawner.user_options = {"binder_repo": "has space"}
    with pytest.raises(BuildFailed) as info:
        spawner.run_pre_spawn_hook()
    assert info.value.status_code == 400
    assert "spaces" in info.value.jupyterhub_message


def test_build_failure_message_is_shown_verbatim() -> None:
    # tornado formats log_message with %; a build's message may contain one.
    e = BuildFailed("100% of layers failed: exit code: 3")
    assert e.jupyterhub_message == "100% of layers failed: exit code: 3"
    assert "100% of layers failed" in str(e)


async def test_progress_replays_for_late_readers_then_follows() -> None:
    log = ProgressLog()
    log.add_build_event({"phase": "waiting", "message": "Waiting for build to start\n"})
    log.add_build_event({"phase": "building", "message": "#1 RUN make\n"})
    seen: list[dict[str, Any]] = []

    async def read() -> None:
        async for event in log.follow():
            seen.append(event)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.01)
    assert [e["message"] for e in seen] == ["Waiting: Waiting for build to start", "Building: #1 RUN make"]
    log.add_build_event({"phase": "ready", "message": "Done! Built image\n"})
    log.close()
    await asyncio.wait_for(reader, 2)
    assert seen[-1] == {"progress": 85, "message": "Ready: Done! Built image"}
    late = [e async for e in log.follow()]  # a reader arriving after the end sees everything
    assert late == seen


def test_build_log_lines_move_the_bar_forward_but_not_past_building() -> None:
    log = ProgressLog()
    for i in range(500):
        log.add_build_event({"phase": "building", "message": f"line {i}"})
    bars = [e["progress"] for e in log.events]
    assert bars == sorted(bars)
    assert bars[0] == 15
    assert bars[-1] == 70
    log.add_build_event({"phase": "building", "message": "x" * 5000})
    assert len(log.events[-1]["message"]) < 1100


def test_blank_build_lines_are_left_out() -> None:
    log = ProgressLog()
    log.add_build_event({"phase": "building", "message": "\n"})
    log.add_build_event({"phase": "building", "message": "#2 DONE\n"})
    log.add_build_event({"phase": "failed", "message": "", "code": "build_failed"})
    assert [e["message"] for e in log.events] == ["Building: #2 DONE", "Failed"]
