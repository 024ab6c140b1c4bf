"""The hub 2i2c runs: KubeSpawner's profile form rendered by jupyterhub-fancy-profiles, binder-service's `gh`.

The world's hub (`tests/support/hub.py`: JupyterHub, proxy, binder-service as the managed service
`binder`) with two changes, as an operator of such a hub writes them:
- the spawner is plain `kubespawner.KubeSpawner` with a profile whose `image` option has
  `dynamic_image_building` and `unlisted_choice` enabled, and fancy-profiles' `setup_ui` (its template
  and built JavaScript, served by the hub);
- binder-service's GitHub is a GitHub-Enterprise-style pair on loopback: the REST API at
  `github_api_url` and git at `github_url` (clone URLs are `<github_url>/<org>/<repo>`).
KubeSpawner loads a Kubernetes config when it is constructed, so the hub gets a kubeconfig whose API
server is a loopback port bound by this helper and never listened on: the form renders, a spawn would
be refused at once. No Kubernetes runs here, so tests stop at the form.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

from tests.support.hub import Hub, running_hub

PROFILE = "build"  # the profile's slug: form fields are named `profile-option-<slug>--<option>...`
IMAGE_FIELD = f"profile-option-{PROFILE}--image--unlisted-choice"  # where the built image name goes

_KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster:
    server: http://127.0.0.1:{port}
users:
- name: nobody
  user: {{}}
contexts:
- name: nowhere
  context:
    cluster: nowhere
    user: nobody
current-context: nowhere
"""

# Appended to the hub's config (settings as one JSON string, as the base config takes its own).
_CONFIG = """
from jupyterhub_fancy_profiles import setup_ui

fancy = json.loads(@FANCY@)
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.profile_list = fancy["profile_list"]
setup_ui(c)
"""


def profile_list(default_image: str) -> list[dict[str, object]]:
    """One profile whose `image` option fancy-profiles offers "Build your own image" for."""
    return [
        {
            "display_name": "Choose or build an image",
            "description": "A listed image, any image, or one built from a GitHub repository",
            "slug": PROFILE,
            "default": True,
            "profile_options": {
                "image": {
                    "display_name": "Image",
                    "dynamic_image_building": {"enabled": True},
                    "unlisted_choice": {
                        "enabled": True,
                        "display_name": "Custom image",
                        "validation_regex": "^.+:.+$",
                        "validation_message": "Must be an image name of the form <image-name>:<tag>",
                        "kubespawner_override": {"image": "{value}"},
                    },
                    "choices": {
                        "listed": {
                            "display_name": "A listed image",
                            "default": True,
                            "kubespawner_override": {"image": default_image},
                        }
                    },
                }
            },
        }
    ]


@contextlib.contextmanager
def running_fancy_hub(
    tmp: Path,
    *,
    world_env: dict[str, str],
    github_api_url: str,
    github_url: str,
    image_prefix: str,
    default_image: str,
) -> Iterator[Hub]:
    """The hub described above, with binder-service's `gh` provider on the given GitHub; stopped on exit."""
    with socket.socket() as closed:  # bound, never listening: connections are refused, nobody else binds it
        closed.bind(("127.0.0.1", 0))
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(_KUBECONFIG.format(port=closed.getsockname()[1]))
        fancy = {"profile_list": profile_list(default_image)}
        with running_hub(
            tmp,
            world_env=world_env,
            image_prefix=image_prefix,
            container_prefix=image_prefix.strip("/").replace("/", "-"),
            service_env={
                "BINDER_SERVICE_GITHUB_API_URL": github_api_url,
                "BINDER_SERVICE_GITHUB_URL": github_url,
            },
            extra_config=_CONFIG.replace("@FANCY@", repr(json.dumps(fancy))),
            # In the environment from the start: kubernetes-asyncio reads it when it is imported.
            hub_env={"KUBECONFIG": str(kubeconfig)},
        ) as hub:
            yield hub
