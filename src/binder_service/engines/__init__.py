"""Container engines for repo2docker that binder-service ships (entry points `repo2docker.engines`).

Nothing here imports repo2docker: the service reads `OUT_OF_MEMORY` without loading an engine.
"""

# How the buildah engine says a RUN step went over the build's memory limit: the start of its last error
# line, which the service turns into `build_out_of_memory`.
OUT_OF_MEMORY = "Error: out of memory: "
