# Shared by .ci/run and the scripts in this folder (sourced, not run).
#
# step NAME COMMAND...  runs COMMAND under a heading and records how long it
# took; the times are printed when the calling script exits, pass or fail.
# static_checks BIN     ruff, ruff format and mypy, with the tools in BIN (a
#                       venv's bin folder).
# tests_and_docs BIN TEST_COMMAND...
#                       the tests, then the docs build with BIN's mkdocs.
# ensure_uv             sets UV to a uv executable of the pinned version.

UV_VERSION=0.13.9

_step_times=()

step() {
  local name=$1 start took
  shift
  printf '\n==> %s\n' "$name"
  local status=0
  start=${EPOCHREALTIME/./}
  "$@" || status=$?
  took=$(( (${EPOCHREALTIME/./} - start) / 100000 ))  # tenths of a second
  _step_times+=("$(printf '%-22s %5d.%ds%s' "$name" $((took / 10)) $((took % 10)) \
    "$([ $status -eq 0 ] || echo "  FAILED (exit $status)")")")
  return $status
}

_print_step_times() {
  local status=$?
  if [ ${#_step_times[@]} -gt 0 ]; then
    printf '\n==> step times\n'
    printf '    %s\n' "${_step_times[@]}"
    printf '    %-22s %5ds\n' "total" "$SECONDS"
  fi
  return $status
}
trap _print_step_times EXIT

static_checks() {
  local bin=$1
  step "ruff" "$bin/ruff" check .
  step "ruff format" "$bin/ruff" format --check .
  step "mypy --strict" "$bin/mypy" --strict src
}

tests_and_docs() {
  local bin=$1 site
  shift
  step "tests" "$@"
  site=$(mktemp -d)
  step "mkdocs build --strict" "$bin/mkdocs" build --strict -q -d "$site"
  rm -rf "$site"
}

ensure_uv() {
  if command -v uv >/dev/null && [ "$(uv --version | cut -d' ' -f2)" = "$UV_VERSION" ]; then
    UV=$(command -v uv)
    return
  fi
  local tools="${XDG_CACHE_HOME:-$HOME/.cache}/prpm-playground/uv-$UV_VERSION"
  if [ ! -x "$tools/bin/uv" ]; then
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install -q "uv==$UV_VERSION"
  fi
  UV="$tools/bin/uv"
}
