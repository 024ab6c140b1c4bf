from binder_service.builds.r2d_logs import Progress, parse_line
from binder_service.events import Phase


def test_phases_and_plain_lines() -> None:
    assert parse_line('{"message": "Cloning\\n", "phase": "fetching"}').phase is Phase.FETCHING
    assert parse_line('{"message": "#5 RUN x\\n", "phase": "building"}').phase is Phase.BUILDING
    push = parse_line('{"message": "#7 pushing 127.0.0.1:5055/x:y with docker\\n", "phase": "building"}')
    assert push.phase is Phase.PUSHING
    assert parse_line('{"message": "Picked Git content provider.\\n"}').phase is None
    plain = parse_line("not json at all")
    assert (plain.phase, plain.message) == (None, "not json at all\n")
    assert parse_line("[1, 2]").message == "[1, 2]\n"


def test_failure_lines_are_errors() -> None:
    line = parse_line('{"message": "Failed to check out ref x", "phase": "failed"}')
    assert line.error
    assert line.message == "Failed to check out ref x"


def test_failure_prefers_the_engines_reason() -> None:
    seen: list[tuple[Phase, str]] = []
    progress = Progress(lambda phase, message: seen.append((phase, message)), Phase.BUILDING)
    progress.feed('{"message": "#5 RUN exit 3\\n", "phase": "building"}')
    progress.feed(
        '{"message": "#5 ERROR: process \\"/bin/sh -c exit 3\\" did not complete: exit code: 3\\n",'
        ' "phase": "building"}'
    )
    progress.feed(
        '{"message": "Error during build: Command [docker, buildx] returned 1", "phase": "failure"}'
    )
    assert progress.failure("fallback") == 'ERROR: process "/bin/sh -c exit 3" did not complete: exit code: 3'
    assert Progress(lambda *_: None).failure("fallback") == "fallback"


def test_a_push_error_is_the_reason_not_repo2dockers_command_line() -> None:
    progress = Progress(lambda *_: None, Phase.BUILDING)
    progress.feed('{"message": "#9 pushing 127.0.0.1:5056/binder-x:abc with docker\\n", "phase": "building"}')
    assert progress.phase is Phase.PUSHING
    progress.feed(
        '{"message": "#9 ERROR: failed to push 127.0.0.1:5056/binder-x:abc: unexpected status: 405\\n",'
        ' "phase": "building"}'
    )
    command = "Command '['docker', 'buildx', 'build', '--progress', 'plain', ...]' returned non-zero exit"
    progress.feed('{"message": "' + command + '", "phase": "failure"}')
    assert progress.failure("fallback") == (
        "ERROR: failed to push 127.0.0.1:5056/binder-x:abc: unexpected status: 405"
    )


def test_the_engine_error_is_said_once() -> None:
    seen: list[tuple[Phase, str]] = []
    progress = Progress(lambda phase, message: seen.append((phase, message)), Phase.BUILDING)
    progress.feed('{"message": "#5 RUN exit 3\\n", "phase": "building"}')
    progress.feed('{"message": "#5 ERROR: process did not complete: exit code: 3\\n", "phase": "building"}')
    progress.feed('{"message": "ERROR: failed to solve: exit code: 3\\n", "phase": "building"}')
    assert [m for _, m in seen] == ["#5 RUN exit 3\n"]  # the reason goes into the failed event only
    assert progress.failure("fallback") == "ERROR: failed to solve: exit code: 3"


def test_held_error_lines_are_logged_when_the_build_succeeds_after_all() -> None:
    seen: list[tuple[Phase, str]] = []
    progress = Progress(lambda phase, message: seen.append((phase, message)), Phase.BUILDING)
    progress.feed('{"message": "#3 ERROR: cache import failed, building without\\n", "phase": "building"}')
    progress.feed('{"message": "#4 DONE\\n", "phase": "building"}')
    progress.flush()
    assert [m for _, m in seen] == ["#4 DONE\n", "#3 ERROR: cache import failed, building without\n"]
